"""The transport error tree: each failure is a specific TransportError, and the cause is kept (`from exc`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgdeploy.errors import ConnectionLost, RemoteRefused, TransportError, TransportTimeout
from bgdeploy.transports.base import CommandResult
from bgdeploy.transports.local import LocalHost
from bgdeploy.transports.ssh import lost_connection


def test_a_failed_command_is_refused_by_the_remote() -> None:
    with pytest.raises(RemoteRefused) as caught:
        CommandResult(("nginx", "-t"), 1, "", "emerg: unknown directive").raise_for_status("nginx -t")
    assert isinstance(caught.value, TransportError)
    assert "unknown directive" in str(caught.value)


def test_a_lost_connection_is_its_own_class() -> None:
    error = lost_connection("deploy@gpu-1:22", EOFError())
    assert isinstance(error, ConnectionLost) and isinstance(error, TransportError)
    assert not isinstance(error, (RemoteRefused, TransportTimeout))


def test_local_failures_keep_their_cause(tmp_path: Path) -> None:
    host = LocalHost()
    (tmp_path / "dir").mkdir()
    with pytest.raises(TransportError) as caught:
        host.read_from(str(tmp_path / "dir"), 0)  # a directory cannot be read as a file
    assert isinstance(caught.value.__cause__, OSError)


def test_a_local_command_that_runs_too_long_is_a_timeout() -> None:
    with pytest.raises(TransportTimeout) as caught:
        LocalHost().run(["sleep", "5"], timeout=0.2)
    assert caught.value.__cause__ is not None
