"""A `Host` whose files are a dict and whose commands answer from a table; it never touches a network."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from bgdeploy.errors import ConnectionLost, TransportError
from bgdeploy.transports.base import CommandResult, Host


class FakeHost:
    """Files in `files`; `run` answers through `commands` (argv -> result) and records every argv in `ran`.

    `fail_after` makes every call after that many fail as a lost connection would.
    """

    description = "fake-host"

    def __init__(self, home: str = "/home/deploy") -> None:
        self.files: dict[str, bytes] = {}
        self.ran: list[tuple[str, ...]] = []
        self.commands: Callable[[tuple[str, ...]], CommandResult] | None = None
        self.fail_reads_after: int | None = None
        self.reads = 0
        self.writes = 0
        self.connected = True
        self.connections_opened = 1
        self._home = home

    def as_host(self) -> Host:
        return cast(Host, self)

    def _lose(self) -> None:
        self.connected = False
        raise ConnectionLost("the connection is gone")

    def home(self) -> str:
        return self._home

    def run(self, argv: Sequence[str], *, timeout: float = 60.0) -> CommandResult:
        key = tuple(argv)
        self.ran.append(key)
        if self.commands is None:
            return CommandResult(key, 0, "", "")
        return self.commands(key)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        if path in self.files:
            return False
        self.files[path] = data
        return True

    def read_file(self, path: str) -> bytes | None:
        self.reads += 1
        if self.fail_reads_after is not None and self.reads > self.fail_reads_after:
            self._lose()
        return self.files.get(path)

    def write_file(self, path: str, data: bytes) -> None:
        self.writes += 1
        self.files[path] = data

    def append(self, path: str, data: bytes) -> None:
        """Test helper: what a writer on the host (nginx) appends to a file."""
        self.files[path] = self.files.get(path, b"") + data

    def remove(self, path: str) -> None:
        self.files.pop(path, None)

    def rename(self, source: str, target: str) -> None:
        if source not in self.files:
            raise TransportError(f"cannot rename {source}: no such file")
        self.files[target] = self.files.pop(source)

    def makedirs(self, path: str) -> None:
        pass

    def read_from(self, path: str, offset: int) -> bytes:
        self.reads += 1
        return self.files.get(path, b"")[offset:]

    def size(self, path: str) -> int:
        return len(self.files.get(path, b""))

    def reach(self, port: int, address: str = "127.0.0.1") -> int:
        return port

    def docker(self) -> Any:
        raise TransportError("the fake host has no Docker engine; give the session a fake engine")

    def close(self) -> None:
        self.connected = False
