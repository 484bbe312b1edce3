"""The host lock (execute/lock.py) on an in-memory host and an injected clock: nothing sleeps, nothing connects."""

from __future__ import annotations

import json
import time

import pytest

from bgdeploy.errors import DeployFailed
from bgdeploy.execute import lock as lock_module
from bgdeploy.execute.lock import STALE_AFTER, HostLock, LockHeld, LockInfo, force_unlock
from tests.fakes import FakeClock, FakeHost

PATH = "/home/deploy/.bgdeploy/chat/lock"


def holder(fake: FakeHost) -> LockInfo:
    info = LockInfo.parse(fake.files.get(PATH))
    assert info is not None
    return info


def host_lock(fake: FakeHost, owner: str, clock: FakeClock | None = None) -> HostLock:
    return HostLock(fake.as_host(), PATH, clock or FakeClock(), owner=owner)


def test_acquire_on_a_free_host_and_release() -> None:
    fake = FakeHost()
    lock = host_lock(fake, "alice on runner-1 pid 1")
    lock.acquire()
    try:
        info = holder(fake)
        assert info.owner == "alice on runner-1 pid 1"
        assert abs(info.heartbeat - time.time()) < 60
        assert info.token
        assert lock.warnings == []
    finally:
        lock.release()
    assert PATH not in fake.files


def test_second_lock_is_refused_naming_the_first_owner() -> None:
    fake = FakeHost()
    first = host_lock(fake, "alice on runner-1 pid 1")
    first.acquire()
    try:
        second = host_lock(fake, "bob on runner-2 pid 2")
        with pytest.raises(LockHeld) as info:
            second.acquire(wait=0)
        message = str(info.value)
        assert "alice on runner-1 pid 1" in message
        assert "--force-unlock" in message
        assert "--lock-wait" in message
        assert isinstance(info.value, DeployFailed)
        assert holder(fake).owner == "alice on runner-1 pid 1"
    finally:
        first.release()


def test_waiting_for_a_live_holder_gives_up_at_the_deadline() -> None:
    fake = FakeHost()
    first = host_lock(fake, "alice")
    first.acquire()
    try:
        clock = FakeClock()
        with pytest.raises(LockHeld):
            host_lock(fake, "bob", clock).acquire(wait=5)
        assert clock.sleeps == [2.0, 2.0, 1.0]
    finally:
        first.release()


def test_waiting_gets_the_lock_when_the_holder_releases() -> None:
    fake = FakeHost()
    first = host_lock(fake, "alice")
    first.acquire()
    clock = FakeClock(on_sleep=first.release)
    second = host_lock(fake, "bob", clock)
    second.acquire(wait=30)
    try:
        assert holder(fake).owner == "bob"
        assert len(clock.sleeps) == 1
    finally:
        second.release()
    assert PATH not in fake.files


def stale_lock(owner: str = "carol on runner-3 pid 3", age: float = STALE_AFTER + 100) -> bytes:
    body = {"owner": owner, "started": "2025-01-01T00:00:00Z", "heartbeat": time.time() - age, "token": "dead"}
    return json.dumps(body).encode()


def test_stale_lock_is_taken_over_with_a_warning() -> None:
    fake = FakeHost()
    fake.files[PATH] = stale_lock()
    lock = host_lock(fake, "bob")
    lock.acquire()
    try:
        assert holder(fake).owner == "bob"
        assert holder(fake).token != "dead"
        assert len(lock.warnings) == 1
        assert "took over a stale lock from carol on runner-3 pid 3" in lock.warnings[0]
        assert "started 2025-01-01T00:00:00Z" in lock.warnings[0]
    finally:
        lock.release()
    assert PATH not in fake.files


def test_recent_heartbeat_is_not_stale() -> None:
    fake = FakeHost()
    fake.files[PATH] = stale_lock(age=STALE_AFTER / 2)
    with pytest.raises(LockHeld, match="carol"):
        host_lock(fake, "bob").acquire()
    assert holder(fake).token == "dead"


@pytest.mark.parametrize("raw", [b"", b"{half", b"[]", b'{"owner": "x"}', b"null"])
def test_unreadable_lock_counts_as_stale(raw: bytes) -> None:
    fake = FakeHost()
    fake.files[PATH] = raw
    lock = host_lock(fake, "bob")
    lock.acquire()
    try:
        assert holder(fake).owner == "bob"
        assert "from unknown" in lock.warnings[0]
    finally:
        lock.release()


def test_release_leaves_a_lock_that_is_not_ours() -> None:
    fake = FakeHost()
    lock = host_lock(fake, "alice")
    lock.acquire()
    taken = stale_lock(owner="dave", age=0).replace(b'"dead"', b'"someone-else"')
    fake.files[PATH] = taken
    lock.release()
    assert fake.files[PATH] == taken


def test_release_after_force_unlock_is_harmless() -> None:
    fake = FakeHost()
    lock = host_lock(fake, "alice")
    lock.acquire()
    force_unlock(fake.as_host(), PATH)
    lock.release()
    assert PATH not in fake.files


def test_force_unlock_returns_the_holder() -> None:
    fake = FakeHost()
    fake.files[PATH] = stale_lock(owner="carol", age=0)
    assert force_unlock(fake.as_host(), PATH) == "carol, started 2025-01-01T00:00:00Z"
    assert PATH not in fake.files


def test_force_unlock_without_a_lock() -> None:
    assert force_unlock(FakeHost().as_host(), PATH) is None


def beating_lock(fake: FakeHost, monkeypatch: pytest.MonkeyPatch) -> HostLock:
    """A lock whose file is on the host but whose heartbeat thread was never started: `_beat` runs on this thread."""
    monkeypatch.setattr(lock_module, "HEARTBEAT_EVERY", 0.0)
    lock = host_lock(fake, "alice")
    old = json.loads(lock._info().to_json())
    fake.files[PATH] = json.dumps({**old, "heartbeat": time.time() - 1000}).encode()
    return lock


def test_heartbeat_refreshes_and_stops_when_the_connection_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHost()
    lock = beating_lock(fake, monkeypatch)
    token = holder(fake).token
    fake.fail_reads_after = fake.reads + 1
    lock._beat()  # one beat (read, write), then the failing read ends it instead of raising
    assert fake.writes == 1
    assert holder(fake).token == token
    assert time.time() - holder(fake).heartbeat < STALE_AFTER
    fake.fail_reads_after = None
    lock.release()
    assert PATH not in fake.files


def test_heartbeat_stops_when_the_lock_was_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHost()
    lock = beating_lock(fake, monkeypatch)
    taken = stale_lock(owner="bob", age=0)
    fake.files[PATH] = taken
    lock._beat()  # returns at once: not ours any more
    assert fake.writes == 0
    lock.release()
    assert fake.files[PATH] == taken


def test_heartbeat_stops_when_the_lock_was_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHost()
    lock = beating_lock(fake, monkeypatch)
    del fake.files[PATH]
    lock._beat()
    assert fake.writes == 0
    assert PATH not in fake.files


def test_lock_info_round_trip() -> None:
    info = LockInfo("alice", "2025-01-01T00:00:00Z", 123.5, "abc")
    assert LockInfo.parse(info.to_json()) == info
    assert LockInfo.parse(None) is None


def test_a_heartbeat_that_never_changes_is_stale_whatever_the_clocks_say() -> None:
    """The holder's clock runs 10 minutes ahead of ours, so its timestamp looks fresh; but it never moves."""
    from bgdeploy.execute.lock import QUIET_AFTER

    fake = FakeHost()
    fake.files[PATH] = stale_lock(age=-600)
    clock = FakeClock()
    lock = HostLock(fake.as_host(), PATH, clock, owner="bob")
    lock.acquire(wait=QUIET_AFTER + 30)
    try:
        assert holder(fake).owner == "bob"
        assert QUIET_AFTER <= clock.t - 1000.0 < QUIET_AFTER + 5, "taken over once it was quiet long enough"
        assert "took over a stale lock from carol" in lock.warnings[0]
    finally:
        lock.release()


def test_a_moving_heartbeat_is_never_taken_over() -> None:
    from bgdeploy.execute.lock import QUIET_AFTER

    fake = FakeHost()
    beats = iter(range(1000))

    def beat() -> None:  # the holder refreshes its heartbeat while we wait
        body = json.loads(fake.files[PATH])
        fake.files[PATH] = json.dumps({**body, "heartbeat": time.time() + next(beats) * 1e-3}).encode()

    fake.files[PATH] = stale_lock(age=0)
    lock = HostLock(fake.as_host(), PATH, FakeClock(on_sleep=beat), owner="bob")
    with pytest.raises(LockHeld, match="carol on runner-3"):
        lock.acquire(wait=QUIET_AFTER * 3)
