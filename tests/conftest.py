"""Suite-wide pytest set-up: one rerun for tests that drive real daemons.

The integration and fault tests drive a real sshd, dockerd and nginx on a 2-core CI machine shared with
the daemons themselves. A test there can lose a race bgdeploy does not own (a keep-alive connection closed
by nginx at the moment a request reuses it, dockerd slow to answer under load). One rerun keeps such a loss
from failing CI; `-ra` and the rerun plugin's summary still list every rerun, so a test that needs it is seen.
Pure unit tests get no rerun: a failure there is always a bug.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_REAL_DAEMON_DIRS = ("integration", "faults")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_root = Path(__file__).resolve().parent
    for item in items:
        try:
            part = Path(str(item.fspath)).resolve().relative_to(tests_root).parts[0]
        except ValueError:
            continue
        if part in _REAL_DAEMON_DIRS and item.get_closest_marker("flaky") is None:
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))
