"""Session.take_lock: the one way a host command takes its deployment's lock (deploy, rollback, remove...)."""

from __future__ import annotations

import pytest

from bgdeploy.execute.lock import LockHeld, LockInfo
from tests.fakes import FakeHost, fake_session


def test_the_lock_is_taken_and_released() -> None:
    host = FakeHost()
    session = fake_session(host=host)
    lock = session.take_lock(wait=0, unlock=False)
    assert LockInfo.parse(host.files[session.layout.lock_file]) is not None
    lock.release()
    assert session.layout.lock_file not in host.files
    assert [p.name for p in session.result.phases] == ["lock"]


def test_a_held_lock_refuses_and_force_unlock_takes_it_over_with_a_warning() -> None:
    host = FakeHost()
    fake_session(host=host).take_lock(wait=0, unlock=False)  # another run holds it
    second = fake_session(host=host)
    with pytest.raises(LockHeld):
        second.take_lock(wait=0, unlock=False)
    lock = second.take_lock(wait=0, unlock=True)
    assert any("--force-unlock" in w for w in second.result.warnings)
    lock.release()
