"""What every way of reaching the GPU host offers, whether over SSH or on this machine."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bgdeploy.errors import RemoteRefused

if TYPE_CHECKING:
    import docker


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def raise_for_status(self, what: str) -> CommandResult:
        if not self.ok:
            detail = (self.stderr or self.stdout).strip().splitlines()[-5:]
            raise RemoteRefused(
                f"{what} failed (exit {self.exit_code}) running {shlex.join(self.argv)}: " + " / ".join(detail)
            )
        return self


class Host(Protocol):
    """The GPU host: commands, files, its Docker engine and its loopback ports."""

    @property
    def description(self) -> str: ...

    @property
    def connections_opened(self) -> int: ...

    @property
    def connected(self) -> bool: ...

    def home(self) -> str: ...

    def run(self, argv: Sequence[str], *, timeout: float = 60.0) -> CommandResult: ...

    def read_file(self, path: str) -> bytes | None: ...

    def write_file(self, path: str, data: bytes) -> None: ...

    def create_exclusive(self, path: str, data: bytes) -> bool: ...

    def rename(self, source: str, target: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def makedirs(self, path: str) -> None: ...

    def docker(self) -> docker.DockerClient: ...

    def read_from(self, path: str, offset: int) -> bytes: ...

    def size(self, path: str) -> int: ...

    def reach(self, port: int, address: str = "127.0.0.1") -> int: ...

    def close(self) -> None: ...
