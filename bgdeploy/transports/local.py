"""The GPU host is this machine (a self-hosted runner): the same operations as SSH, without SSH."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bgdeploy.errors import TransportError, TransportTimeout
from bgdeploy.transports.base import CommandResult

if TYPE_CHECKING:
    import docker


class LocalHost:
    def __init__(self) -> None:
        self._docker: docker.DockerClient | None = None

    @property
    def description(self) -> str:
        return "this machine (local)"

    @property
    def connections_opened(self) -> int:
        return 0

    @property
    def connected(self) -> bool:
        return True

    def home(self) -> str:
        return str(Path.home())

    def run(self, argv: Sequence[str], *, timeout: float = 60.0) -> CommandResult:
        try:
            done = subprocess.run(
                list(argv), capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            return CommandResult(tuple(argv), 127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired as exc:
            raise TransportTimeout(f"{argv[0]} timed out after {timeout:g}s") from exc
        return CommandResult(
            tuple(argv), done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        )

    def read_file(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransportError(f"cannot read {path}: {exc.strerror}") from exc

    def read_from(self, path: str, offset: int) -> bytes:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                return handle.read()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise TransportError(f"cannot read {path}: {exc.strerror}") from exc

    def size(self, path: str) -> int:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise TransportError(f"cannot stat {path}: {exc.strerror}") from exc

    def write_file(self, path: str, data: bytes) -> None:
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            self.makedirs(os.path.dirname(path))
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())  # durable before the rename: a crash never leaves an empty file
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise TransportError(f"cannot write {path}: {exc.strerror}") from exc

    def create_exclusive(self, path: str, data: bytes) -> bool:
        try:
            self.makedirs(os.path.dirname(path))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise TransportError(f"cannot create {path}: {exc.strerror}") from exc
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True

    def rename(self, source: str, target: str) -> None:
        try:
            os.replace(source, target)
        except OSError as exc:
            raise TransportError(f"cannot rename {source} to {target}: {exc.strerror}") from exc

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def makedirs(self, path: str) -> None:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise TransportError(f"cannot create {path}: {exc.strerror}") from exc

    def docker(self) -> docker.DockerClient:
        if self._docker is None:
            import docker
            from docker.errors import DockerException

            try:
                self._docker = docker.from_env(timeout=120)
                self._docker.ping()
            except DockerException as exc:
                raise TransportError(
                    f"the local Docker engine did not answer: {exc}; start dockerd or set DOCKER_HOST"
                ) from exc
        return self._docker

    def reach(self, port: int, address: str = "127.0.0.1") -> int:
        if address not in ("127.0.0.1", "localhost"):
            raise TransportError(f"local transport reaches loopback only, not {address}:{port}")
        return port  # the colours publish on this machine's loopback already

    def close(self) -> None:
        if self._docker is not None:
            with contextlib.suppress(Exception):
                self._docker.close()
            self._docker = None
