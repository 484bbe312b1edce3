"""Time, injected: wait loops take a Clock so unit tests run them without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol, TypeVar

from bgdeploy.errors import DeployFailed

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def poll(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float,
    clock: Clock,
    what: str,
    fix: str = "",
    on_wait: Callable[[float], None] | None = None,
) -> T:
    """Call `check` every `interval` until it returns something, or raise DeployFailed after `timeout`.

    `check` may raise to stop early (a container that died is not worth waiting for).
    `on_wait(elapsed)` is called before each sleep, for progress output.
    """
    start = clock.now()
    attempts = 0
    while True:
        attempts += 1
        result = check()
        if result is not None:
            return result
        elapsed = clock.now() - start
        if elapsed >= timeout:
            hint = f"; {fix}" if fix else ""
            raise DeployFailed(f"{what}: gave up after {elapsed:.0f}s ({attempts} tries){hint}")
        if on_wait is not None:
            on_wait(elapsed)
        clock.sleep(min(interval, max(0.0, timeout - elapsed)))
