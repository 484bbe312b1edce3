"""Failpoints: named places where the fault-matrix harness (tests/faults, bench/faults.py) injects a fault.

Off unless BGDEPLOY_FAILPOINTS is set (never in normal use): a comma-separated list of `POINT=ACTION`, where
POINT is `before:STEP` (a deploy step boundary, from the plan's own step list), `before:COMMAND:PHASE` (a
phase of rollback, promote, abort or a canary step: bgdeploy/plan/boundaries.py), `router:reload` or `state:write`,
and ACTION is `kill` (SIGKILL this process), `fail` (the operation fails as it would on the host),
`drop` (close the connection to the host), or `pause` (write BGDEPLOY_FAILPOINT_DIR/POINT.reached and wait,
at most 120 s, for POINT.go there: the harness restarts a container or dockerd meanwhile); `crash` raises an
exception outside bgdeploy's tree, as a bug would (a crash must still roll back and report, exit 3).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bgdeploy.errors import TransportError
from bgdeploy.plan.boundaries import Command, point
from bgdeploy.plan.result import Phase

if TYPE_CHECKING:
    from bgdeploy.execute.session import Session

ENV = "BGDEPLOY_FAILPOINTS"


def _actions() -> dict[str, str]:
    spec = os.environ.get(ENV, "")
    out: dict[str, str] = {}
    for part in spec.split(","):
        point, _, action = part.strip().partition("=")
        if point and action:
            out[point] = action
    return out


def hit(point: str, host: Any = None) -> None:
    """Inject the fault configured for `point`, if any. `fail` raises TransportError (a failed host write)."""
    action = _actions().get(point)
    if action is None:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "fail":
        raise TransportError(f"failpoint {point}: injected failure (No space left on device)")
    if action == "crash":
        raise RuntimeError(f"failpoint {point}: planted bug")
    if action == "drop" and host is not None:
        # As a network failure would: the SSH transport underneath goes away, the host object stays as it is.
        client: Any = getattr(host, "_client", None)
        with contextlib.suppress(Exception):
            client.get_transport().close()
        raise TransportError(f"failpoint {point}: the connection to the host was dropped")
    if action == "pause":
        folder = Path(os.environ.get("BGDEPLOY_FAILPOINT_DIR", "/tmp"))
        name = point.replace(":", "-")
        (folder / f"{name}.reached").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while not (folder / f"{name}.go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


@contextlib.contextmanager
def phase(session: Session, command: Command, name: str) -> Iterator[Phase]:
    """A named phase of `command` entered at its boundary: the boundary's failpoint, then `session.phase`.
    Callers pass names typed by bgdeploy/plan/boundaries.py's lists, which the fault matrix enumerates."""
    hit(point(command, name), session.host)
    with session.phase(name) as record:
        yield record
