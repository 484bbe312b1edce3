"""The lock holds or the deploy stops: a failed heartbeat is retried; a lock that cannot be kept is lost,
and the deploy's next wait raises LockLost (once, so that the rollback itself can run)."""

from __future__ import annotations

import pytest

from bgdeploy.errors import DeployFailed, TransportError
from bgdeploy.execute.lock import (
    HEARTBEAT_EVERY,
    KEEP_FOR,
    QUIET_AFTER,
    RETRY_EVERY,
    GuardedClock,
    HostLock,
    LockInfo,
    LockLost,
)
from tests.fakes import FakeClock, FakeHost

PATH = "/home/deploy/.bgdeploy/chat/lock"


class FlakyHost(FakeHost):
    """Heartbeat writes fail while `failing` is set (a full disk, a dropped SFTP channel)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def write_file(self, path: str, data: bytes) -> None:
        if self.failing:
            raise TransportError(f"cannot write {path}: No space left on device")
        super().write_file(path, data)


def held(fake: FakeHost) -> HostLock:
    lock = HostLock(fake.as_host(), PATH, FakeClock(), owner="me")
    fake.files[PATH] = lock._info().to_json()
    lock._last_beat = 0.0
    return lock


def test_a_transient_write_error_is_retried_soon_and_the_lock_kept() -> None:
    fake = FlakyHost()
    lock = held(fake)
    fake.failing = True
    assert lock.beat_once(5.0) == RETRY_EVERY
    assert lock.beat_once(6.0) == RETRY_EVERY
    assert lock.lost is None
    fake.failing = False
    before = fake.writes
    assert lock.beat_once(7.0) == HEARTBEAT_EVERY
    assert fake.writes == before + 1 and lock.lost is None
    assert lock.warnings == ["the lock's heartbeat failed 2 time(s) in a row and was retried until it was written"]
    lock.check()  # nothing to raise


def test_a_heartbeat_that_cannot_be_written_loses_the_lock_before_anyone_may_take_it_over() -> None:
    fake = FlakyHost()
    lock = held(fake)
    fake.failing = True
    now = 0.0
    while lock.lost is None:
        now += lock.beat_once(now)
        assert now < KEEP_FOR + RETRY_EVERY, "given up within KEEP_FOR"
    assert now < QUIET_AFTER, "lost well before a waiting deploy could take the lock over"
    assert "could not be written" in lock.lost and "No space left on device" in lock.lost
    with pytest.raises(LockLost, match="rolling back rather than going on unlocked") as info:
        lock.check()
    assert isinstance(info.value, DeployFailed)  # a failed deploy: the cycle rolls back
    lock.check()  # only once: the rollback's own waits go on


def test_a_lock_taken_over_or_removed_is_lost_at_the_next_heartbeat() -> None:
    fake = FlakyHost()
    lock = held(fake)
    fake.files[PATH] = LockInfo("bob on runner-2", "now", 1.0, "other").to_json()
    lock.beat_once(5.0)
    assert lock.lost is not None and "taken over by bob on runner-2" in lock.lost
    other = held(FlakyHost())
    other._host.remove(PATH)
    other.beat_once(5.0)
    assert other.lost is not None and "removed" in other.lost


def test_the_deploys_waits_check_the_lock() -> None:
    fake = FlakyHost()
    lock = held(fake)
    clock = GuardedClock(FakeClock(), lock)
    clock.sleep(1)
    lock.lost = "its heartbeat could not be written for 20s"
    with pytest.raises(LockLost):
        clock.sleep(1)
    clock.sleep(1)
    assert clock.now() == 1002.0
