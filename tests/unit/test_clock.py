"""Wait loops on an injected clock (execute/clock.py): nothing sleeps."""

from __future__ import annotations

import pytest

from bgdeploy.errors import DeployFailed
from bgdeploy.execute.clock import poll
from tests.fakes import FakeClock


def test_poll_returns_the_first_result_without_sleeping() -> None:
    clock = FakeClock()
    assert poll(lambda: "ready", timeout=10, interval=1, clock=clock, what="x") == "ready"
    assert clock.sleeps == []


def test_poll_returns_the_first_non_none_result() -> None:
    clock = FakeClock()
    answers: list[int | None] = [None, None, 0, 5]
    waits: list[float] = []
    result = poll(lambda: answers.pop(0), timeout=60, interval=2, clock=clock, what="x", on_wait=waits.append)
    assert result == 0  # falsy but not None: done
    assert answers == [5]
    assert clock.sleeps == [2, 2]
    assert waits == [0, 2]


def test_poll_gives_up_after_the_timeout() -> None:
    clock = FakeClock()
    calls: list[float] = []
    waits: list[float] = []

    def check() -> str | None:
        calls.append(clock.now())
        return None

    with pytest.raises(DeployFailed) as info:
        poll(
            check,
            timeout=5,
            interval=2,
            clock=clock,
            what="green did not become ready",
            fix="look at the container's logs",
            on_wait=waits.append,
        )
    message = str(info.value)
    assert message == "green did not become ready: gave up after 5s (4 tries); look at the container's logs"
    assert waits == [0, 2, 4]
    # The last sleep is cut so the last try is at the deadline, not past it.
    assert clock.sleeps == [2, 2, 1]
    assert calls == [1000, 1002, 1004, 1005]


def test_poll_without_fix_has_no_hint() -> None:
    with pytest.raises(DeployFailed) as info:
        poll(lambda: None, timeout=0, interval=1, clock=FakeClock(), what="never")
    assert str(info.value) == "never: gave up after 0s (1 tries)"


def test_poll_propagates_an_exception_from_check_at_once() -> None:
    clock = FakeClock()
    tries: list[int] = []

    def check() -> str | None:
        tries.append(1)
        if len(tries) == 2:
            raise DeployFailed("the container exited with code 137")
        return None

    with pytest.raises(DeployFailed, match="exited with code 137"):
        poll(check, timeout=600, interval=5, clock=clock, what="x")
    assert len(tries) == 2
    assert clock.sleeps == [5]


def test_poll_propagates_any_exception_type() -> None:
    def check() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        poll(check, timeout=600, interval=5, clock=FakeClock(), what="x")
