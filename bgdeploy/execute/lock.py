"""One deploy per deployment name per host: an atomic lock file with owner, start time and a heartbeat.

Created with O_EXCL on the host (atomic); a thread refreshes the heartbeat. A lock belonged to a killed
process, and is taken over with a warning, when its heartbeat stopped: either its timestamp is older than
STALE_AFTER by our clock (generous, since runners' clocks may differ), or, clock-free, a waiting process
saw the very same heartbeat unchanged for QUIET_AFTER of its own waiting.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
from dataclasses import dataclass

from bgdeploy.errors import BgdeployError, DeployFailed
from bgdeploy.execute.clock import Clock, utc_now
from bgdeploy.transports.base import Host

HEARTBEAT_EVERY = 5.0
STALE_AFTER = 300.0  # by the timestamp: allows minutes of clock difference between two runners
QUIET_AFTER = 45.0  # by observation: nine missed heartbeats, measured on our own clock
# A failed heartbeat is retried every RETRY_EVERY; after KEEP_FOR without one written the lock counts as lost,
# well before a waiting deploy could take it over (QUIET_AFTER), so the deploy stops instead of running unlocked.
RETRY_EVERY = 1.0
KEEP_FOR = 20.0


class LockHeld(DeployFailed):
    """Another deploy of the same name holds the lock."""


class LockLost(DeployFailed):
    """The lock could not be kept (its heartbeat failed too long, or another process removed it)."""


@dataclass(frozen=True)
class LockInfo:
    owner: str
    started: str
    heartbeat: float
    token: str

    @classmethod
    def parse(cls, raw: bytes | None) -> LockInfo | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return cls(str(data["owner"]), str(data["started"]), float(data["heartbeat"]), str(data["token"]))
        except (ValueError, KeyError, TypeError):
            # Half-written or foreign content: treat it as a lock with no heartbeat, i.e. stale.
            return cls("unknown", "unknown", 0.0, "")

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__).encode()


def default_owner() -> str:
    actor = os.environ.get("GITHUB_ACTOR")
    run = os.environ.get("GITHUB_RUN_ID")
    who = f"{actor} (GitHub run {run})" if actor and run else getpass.getuser()
    return f"{who} on {socket.gethostname()} pid {os.getpid()}"


class HostLock:
    def __init__(self, host: Host, path: str, clock: Clock, *, owner: str | None = None) -> None:
        self._host = host
        self._path = path
        self._clock = clock
        self._owner = owner or default_owner()
        self._token = os.urandom(8).hex()
        self._started = utc_now()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.warnings: list[str] = []
        self.lost: str | None = None  # why the lock is no longer ours (set by the heartbeat thread)
        self._lost_raised = False
        self._last_beat = time.monotonic()
        self._failures = 0

    def _info(self) -> LockInfo:
        return LockInfo(self._owner, self._started, time.time(), self._token)

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to `wait` seconds for a live holder; raise LockHeld naming it."""
        deadline = self._clock.now() + wait
        first_seen: dict[tuple[str, float], float] = {}
        while True:
            if self._host.create_exclusive(self._path, self._info().to_json()):
                break
            # None: released between our two calls; count it as a live holder and try again shortly.
            holder = LockInfo.parse(self._host.read_file(self._path)) or LockInfo("someone", "now", time.time(), "")
            seen = first_seen.setdefault((holder.token, holder.heartbeat), self._clock.now())
            quiet = self._clock.now() - seen
            age = time.time() - holder.heartbeat
            if (age > STALE_AFTER or quiet >= QUIET_AFTER) and self._take_over(holder, max(age, quiet)):
                break
            if self._clock.now() >= deadline:
                raise LockHeld(
                    f"another deploy of this name is running: {holder.owner}, started {holder.started}. Wait for "
                    "it (--lock-wait SECONDS), or if it is gone for sure, run with --force-unlock"
                )
            self._clock.sleep(min(2.0, max(0.1, deadline - self._clock.now())))
        self._last_beat = time.monotonic()
        self._thread = threading.Thread(target=self._beat, name="bgdeploy-lock-heartbeat", daemon=True)
        self._thread.start()

    def _take_over(self, holder: LockInfo, age: float) -> bool:
        """Move the stale lock aside (a rename: only one of several takers wins), then create ours."""
        aside = f"{self._path}.stale-{self._token}"
        try:
            self._host.rename(self._path, aside)
        except BgdeployError:
            return False  # someone else moved it first
        moved = LockInfo.parse(self._host.read_file(aside))
        self._host.remove(aside)
        if moved is not None and moved.token != holder.token:
            # We moved a fresh lock that another taker had just created: give it back and keep waiting.
            self._host.create_exclusive(self._path, moved.to_json())
            return False
        if not self._host.create_exclusive(self._path, self._info().to_json()):
            return False
        self.warnings.append(
            f"took over a stale lock from {holder.owner} (started {holder.started}, no heartbeat for {age:.0f}s: "
            "that deploy was killed); the host is checked and converged below"
        )
        return True

    def _beat(self) -> None:
        wait = HEARTBEAT_EVERY
        while not self._stop.wait(wait) and self.lost is None:
            wait = self.beat_once(time.monotonic())

    def beat_once(self, now: float) -> float:
        """Refresh the heartbeat once; return the seconds until the next try. A failed write is retried soon;
        a lock that cannot be kept (KEEP_FOR without a heartbeat, or no longer ours) sets `lost`."""
        try:
            current = LockInfo.parse(self._host.read_file(self._path))
            if current is None or current.token != self._token:
                who = "removed (--force-unlock?)" if current is None else f"taken over by {current.owner}"
                self.lost = f"the lock file was {who}"
                return HEARTBEAT_EVERY
            self._host.write_file(self._path, self._info().to_json())
        except BgdeployError as exc:
            self._failures += 1
            quiet = now - self._last_beat
            if quiet + RETRY_EVERY >= KEEP_FOR:
                self.lost = f"its heartbeat could not be written for {quiet:.0f}s ({self._failures} tries; {exc})"
            return RETRY_EVERY
        if self._failures:
            self.warnings.append(
                f"the lock's heartbeat failed {self._failures} time(s) in a row and was retried until it was written"
            )
        self._failures = 0
        self._last_beat = now
        return HEARTBEAT_EVERY

    def check(self) -> None:
        """Raise LockLost (a failed deploy: it rolls back) the first time the lock is found lost; afterwards
        pass, so that the rollback itself can run."""
        if self.lost is not None and not self._lost_raised:
            self._lost_raised = True
            raise LockLost(
                f"the deploy lock could not be kept: {self.lost}; stopping and rolling back rather than going on "
                "unlocked (another deploy could take the lock over)"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_EVERY + 1)
        try:
            current = LockInfo.parse(self._host.read_file(self._path))
            if current is not None and current.token == self._token:
                self._host.remove(self._path)
        except BgdeployError as exc:
            # The connection is gone: the lock stays behind, stops beating, and the next run takes it over.
            self.warnings.append(f"could not release the lock ({exc}); the next run takes it over once it is stale")


class GuardedClock:
    """The session's clock, checking the lock before each wait: every wait loop of a deploy (loading,
    validation, bake, canary, drain) notices a lost lock within one interval and the deploy rolls back."""

    def __init__(self, clock: Clock, lock: HostLock) -> None:
        self._clock = clock
        self._lock = lock

    def now(self) -> float:
        return self._clock.now()

    def sleep(self, seconds: float) -> None:
        self._lock.check()
        self._clock.sleep(seconds)


def force_unlock(host: Host, path: str) -> str | None:
    """Remove the lock whoever holds it; return the holder's description (None when there was none)."""
    holder = LockInfo.parse(host.read_file(path))
    host.remove(path)
    return None if holder is None else f"{holder.owner}, started {holder.started}"
