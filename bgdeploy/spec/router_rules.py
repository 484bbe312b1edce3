"""What the router can carry: the spec values that end up in the nginx config, checked where they are written.

`bgdeploy validate` must refuse whatever the nginx renderer would refuse (or nginx itself would), so a spec
that validates can always be switched and rolled back. The renderer (plan/nginx.py) uses the same patterns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from bgdeploy.spec.models import Spec

Finding = tuple[tuple[str | int, ...], str]

# The path goes into `location = PATH` and into a quoted JSON body; an optional query string is passed to the
# server as is (nginx matches locations on the path alone). No quotes, spaces, `$`, `;`, `#`, braces or `%`.
HEALTH_PATH_PATTERN = r"^/[A-Za-z0-9._~/:@+,=!-]*(\?[A-Za-z0-9._~/:@+,=&!-]*)?$"
HEALTH_PATH_RE = re.compile(HEALTH_PATH_PATTERN)
# nginx refuses time values past ~3e11 s; a day is far longer than any answer, streams included.
MAX_READ_TIMEOUT_S = 24 * 3600.0
MIN_READ_TIMEOUT_S = 0.001  # nginx's unit; 0 would time out every answer at once


def health_path_findings(spec: Spec) -> Iterator[Finding]:
    path = spec.health.path
    if not HEALTH_PATH_RE.match(path):
        yield (
            ("health", "path"),
            f"{path!r} cannot be routed: the router puts it in an nginx location, where quotes, spaces, `$`, `;`, "
            "`#`, `%` and braces are not allowed; use a plain path such as /health (a query such as ?ready=1 is fine)",
        )


def read_timeout_findings(spec: Spec) -> Iterator[Finding]:
    seconds = spec.router.read_timeout
    if seconds < MIN_READ_TIMEOUT_S:
        yield (
            ("router", "read_timeout"),
            "router.read_timeout must be more than 0 (nginx would cut every answer at once); set it longer than "
            "the longest answer, e.g. 120s",
        )
    elif seconds > MAX_READ_TIMEOUT_S:
        yield (
            ("router", "read_timeout"),
            f"router.read_timeout {seconds:g}s is more than a day, which nginx may refuse; use 24h or less",
        )
