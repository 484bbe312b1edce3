"""A colour's wait for readiness and its drain, against a model server answered by httpx.MockTransport and
a fake engine and clock: the polling logic without Docker, a network or real time."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from bgdeploy.execute import colours
from bgdeploy.execute.colours import ContainerFailed
from tests.fakes import FakeClock, FakeEngine, container, fake_session

GREEN = "bgdeploy-unit-green"


def server(answer: Callable[[httpx.Request, int], httpx.Response]) -> tuple[httpx.MockTransport, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return answer(request, len(seen))

    return httpx.MockTransport(handle), seen


def test_wait_ready_polls_the_health_path_until_200() -> None:
    transport, seen = server(lambda r, n: httpx.Response(200 if n >= 3 else 503))
    clock = FakeClock()
    session = fake_session(engine=FakeEngine(container(GREEN)), clock=clock, http=transport)
    info = colours.wait_ready(session, "green")
    assert info.name == GREEN and seen == ["/health"] * 3
    assert len(clock.sleeps) == 2


def test_wait_ready_fails_at_once_when_the_container_exits() -> None:
    transport, _ = server(lambda r, n: httpx.Response(503))
    engine = FakeEngine(container(GREEN, status="exited"))
    with pytest.raises(ContainerFailed, match="exited"):
        colours.wait_ready(fake_session(engine=engine, http=transport), "green")


def test_drain_waits_until_no_request_is_in_flight() -> None:
    metrics = ["vllm:num_requests_running 2\n", "vllm:num_requests_running 1\n", "vllm:num_requests_running 0\n"]
    transport, seen = server(lambda r, n: httpx.Response(200, text=metrics[min(n, 3) - 1]))
    clock = FakeClock()
    colours.drain(fake_session(engine=FakeEngine(container(GREEN)), clock=clock, http=transport), "green")
    assert seen == ["/metrics"] * 3 and clock.sleeps == [0.5, 0.5]


def test_drain_gives_up_at_the_drain_timeout_with_a_warning() -> None:
    transport, _ = server(lambda r, n: httpx.Response(200, text="vllm:num_requests_running 4\n"))
    session = fake_session(engine=FakeEngine(container(GREEN)), http=transport)
    colours.drain(session, "green")
    assert any("still had 4 request(s) in flight" in w for w in session.result.warnings)
