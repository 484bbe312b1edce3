"""An SFTP request on a closed channel (paramiko: `OSError("Socket is closed")`, seen in the run after a
killed deploy, once it had waited for the stale lock) is a ConnectionLost with its cause, never an
unwrapped OSError that ends the run as an internal error (exit 3)."""

from __future__ import annotations

from typing import Any

import pytest

from bgdeploy.errors import ConnectionLost, RemoteRefused
from bgdeploy.transports.ssh import SshHost


class FakeTransport:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


class FakeSftp:
    """Every request fails as paramiko's would: `error` is raised by stat, open and the rest."""

    def __init__(self, error: OSError) -> None:
        self.error = error
        self.closed = False

    def stat(self, path: str) -> Any:
        raise self.error

    def open(self, path: str, mode: str = "r") -> Any:
        raise self.error

    def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self, sftp: FakeSftp, *, active: bool = True) -> None:
        self.sftp = sftp
        self.opened = 0
        self.transport = FakeTransport(active)

    def get_transport(self) -> FakeTransport:
        return self.transport

    def open_sftp(self) -> FakeSftp:
        self.opened += 1
        return self.sftp


def host_over(client: FakeClient) -> SshHost:
    return SshHost(client, "deploy@gpu-1:22")  # type: ignore[arg-type]


def test_socket_is_closed_while_making_the_lock_directory_is_a_lost_connection() -> None:
    error = OSError("Socket is closed")
    client = FakeClient(FakeSftp(error))
    host = host_over(client)
    with pytest.raises(ConnectionLost) as caught:
        host.create_exclusive("/home/deploy/.bgdeploy/x/lock", b"{}")  # makedirs' stat meets the closed channel
    assert caught.value.__cause__ is error
    assert "Socket is closed" in str(caught.value) and "run the command again" in str(caught.value)


def test_the_closed_sftp_channel_is_dropped_so_the_next_call_opens_a_new_one() -> None:
    sftp = FakeSftp(OSError("Socket is closed"))
    client = FakeClient(sftp)
    host = host_over(client)
    for _ in range(2):
        with pytest.raises(ConnectionLost):
            host.makedirs("/srv/state")
    assert client.opened == 2 and sftp.closed


def test_every_file_operation_wraps_it() -> None:
    host = host_over(FakeClient(FakeSftp(OSError("Socket is closed")), active=False))
    for call in (
        lambda: host.makedirs("/srv/a"),
        lambda: host.read_file("/srv/a/state.json"),
        lambda: host.size("/srv/a/log"),
        lambda: host.create_exclusive("/srv/a/lock", b""),
    ):
        with pytest.raises(ConnectionLost) as caught:
            call()
        assert isinstance(_root(caught.value), OSError)


def test_socket_is_closed_on_a_read_with_the_connection_up_is_lost_too() -> None:
    client = FakeClient(FakeSftp(OSError("Socket is closed")))  # the SFTP channel closed, the transport not
    host = host_over(client)
    with pytest.raises(ConnectionLost) as caught:
        host.read_file("/srv/a/state.json")
    assert isinstance(_root(caught.value), OSError)
    with pytest.raises(ConnectionLost):
        host.read_file("/srv/a/state.json")
    assert client.opened == 2  # the closed channel was dropped and a new one opened


def _root(error: BaseException) -> BaseException:
    for _ in range(10):
        if error.__cause__ is None:
            break
        error = error.__cause__
    return error


def test_a_real_file_system_answer_stays_a_refusal_not_a_lost_connection() -> None:
    denied = PermissionError(13, "Permission denied")
    host = host_over(FakeClient(FakeSftp(denied)))
    with pytest.raises(RemoteRefused) as caught:
        host.makedirs("/srv/state")
    assert not isinstance(caught.value, ConnectionLost) and caught.value.__cause__ is denied
