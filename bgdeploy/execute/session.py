"""Everything one command needs while it works on a host: the spec, the connection, the clock, the output."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bgdeploy.analysis.source import TrafficSource
from bgdeploy.analysis.sources import traffic_source
from bgdeploy.execute.clock import Clock
from bgdeploy.execute.lock import HostLock, force_unlock
from bgdeploy.plan.gpu import Gpu
from bgdeploy.plan.names import Layout
from bgdeploy.plan.result import Phase, Result
from bgdeploy.plan.state import Release
from bgdeploy.spec.load import LoadedSpec
from bgdeploy.transports.base import Host
from bgdeploy.transports.docker_engine import DockerEngine
from bgdeploy.transports.engine import Engine
from bgdeploy.transports.http import ServerClient
from bgdeploy.untrusted import secrets as secret_registry
from bgdeploy.untrusted.commands import inert
from bgdeploy.untrusted.secrets import MaskingStream

if TYPE_CHECKING:
    import httpx

    from bgdeploy.routers import Router


@dataclass
class Output:
    """Progress lines on stderr, with elapsed time; secret values are masked whatever prints them."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    secrets: tuple[str, ...] = ()
    start: float = field(default_factory=time.monotonic)
    groups: bool = False  # under GitHub Actions: each phase folds into a ::group::
    # One line that rewrites itself (a model loading): only on a terminal, never in CI, under TERM=dumb or
    # into a pipe, where plain lines are printed instead. None: decided from the stream on first use.
    live: bool | None = None
    _live_width: int = 0

    def _is_live(self) -> bool:
        if self.live is None:
            target = getattr(self.stream, "target", self.stream)  # the terminal behind a masking stream
            try:
                tty = bool(target.isatty())
            except (AttributeError, ValueError):
                tty = False
            ci = os.environ.get("CI", "").lower() == "true" or os.environ.get("GITHUB_ACTIONS") == "true"
            self.live = tty and not self.groups and not ci and os.environ.get("TERM") != "dumb"
        return self.live

    def progress(self, message: str) -> bool:
        """Show `message` on the live line (no colour, so NO_COLOR has nothing to turn off); False when there is
        no terminal, and the caller prints its plain progress lines instead."""
        if not self._is_live():
            return False
        elapsed = time.monotonic() - self.start
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        text = inert(self.mask(f"[{elapsed:6.1f}s] {message}")).replace("\n", " ")[:width]
        self.stream.write("\r" + text.ljust(self._live_width))
        self.stream.flush()
        self._live_width = len(text)
        return True

    def _end_live(self) -> None:
        if self._live_width:
            self.stream.write("\r" + " " * self._live_width + "\r")
            self._live_width = 0

    def __post_init__(self) -> None:
        for secret in self.secrets:
            secret_registry.register(secret)

    def mask(self, text: str) -> str:
        """The one masking choke point (`bgdeploy.untrusted.secrets`): every secret this process knows."""
        for secret in self.secrets:
            secret_registry.register(secret)
        return secret_registry.mask(text)

    def say(self, message: str) -> None:
        self._end_live()
        elapsed = time.monotonic() - self.start
        # Messages may quote model output or container logs: no line of them may act as a workflow command.
        print(inert(self.mask(f"[{elapsed:6.1f}s] {message}")), file=self.stream, flush=True)

    def command(self, line: str) -> None:
        """A workflow command of our own (`::group::`), written past the CLI's masking stream unchanged."""
        if isinstance(self.stream, MaskingStream):
            self.stream.raw_write(line)
        else:
            print(line, file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        self.say(f"warning: {message}")


@dataclass
class Session:
    loaded: LoadedSpec
    host: Host
    layout: Layout
    clock: Clock
    out: Output
    environ: Mapping[str, str]
    result: Result
    # Called once the release this command will make live is known (the action creates its GitHub
    # deployment there, with the model and colour in the payload).
    on_target: Callable[[Release], None] | None = None
    # The GPUs the preflight read (nvidia-smi), for the record a GitHub deployment keeps.
    gpus_seen: list[Gpu] = field(default_factory=list)
    _engine: Engine | None = None  # a test gives a fake here
    _router: Router | None = None
    _traffic: TrafficSource | None = None
    http_transport: httpx.BaseTransport | None = None  # a test serves the model servers' HTTP here

    @property
    def spec_dir(self) -> Path:
        return Path(self.loaded.path).resolve().parent

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = DockerEngine(self.host.docker())
        return self._engine

    @property
    def traffic(self) -> TrafficSource:
        """Where live traffic figures come from (the bake, canary steps and `status` read them here)."""
        if self._traffic is None:
            self._traffic = traffic_source(self.loaded.spec, self.host, self.layout)
        return self._traffic

    @property
    def router(self) -> Router:
        """The router of this deployment's kind (chosen once, from router.mode)."""
        if self._router is None:
            from bgdeploy.routers import router_for  # routers import this module

            self._router = router_for(self)
        return self._router

    def client(self, local_port: int, *, timeout: float, api_key: str | None = None) -> ServerClient:
        """A client of the model server (or router) at `local_port` on this machine (see `host.reach`)."""
        base = f"http://127.0.0.1:{local_port}"
        return ServerClient(base, api_key=api_key, timeout=timeout, transport=self.http_transport)

    def take_lock(self, *, wait: float, unlock: bool) -> HostLock:
        """This deployment's lock on the host, waiting up to `wait` seconds; `unlock` first removes whoever
        holds it (--force-unlock). The caller releases it."""
        if unlock:
            holder = force_unlock(self.host, self.layout.lock_file)
            if holder:
                self.warn(f"removed the lock held by {holder} (--force-unlock)")
        lock = HostLock(self.host, self.layout.lock_file, self.clock)
        with self.phase("lock"):
            lock.acquire(wait)
        return lock

    def warn(self, message: str) -> None:
        self.result.warnings.append(message)
        self.out.warn(message)

    def set_target(self, release: Release) -> None:
        self.result.target = release
        if self.on_target is not None:
            self.on_target(release)

    @contextlib.contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[Phase]:
        """Time a phase and record it in the result, failed when it raises."""
        record = Phase(name, 0.0, "ok", detail)
        start = self.clock.now()
        if self.out.groups:
            self.out.command(f"::group::{name}")
        try:
            yield record
        except BaseException:
            record.outcome = "failed"
            raise
        finally:
            record.seconds = round(self.clock.now() - start, 3)
            self.result.phases.append(record)
            if self.out.groups:
                self.out.command("::endgroup::")
