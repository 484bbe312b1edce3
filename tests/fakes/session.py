"""A Session over fakes (host, engine, clock, traffic): what a unit test of the cycle hands the code."""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx

from bgdeploy.analysis.source import ColourTraffic, Cursor, TrafficSource, Window
from bgdeploy.execute.session import Output, Session
from bgdeploy.plan.names import Layout
from bgdeploy.plan.result import Result
from bgdeploy.spec import parse_spec_text
from tests.fakes.clock import FakeClock
from tests.fakes.engine import FakeEngine
from tests.fakes.host import FakeHost

SPEC = """\
version: 1
name: unit
target:
  transport: local
model:
  name: acme/tiny
runtime:
  image: vllm/vllm-openai:v0.9.2
"""


class FakeTraffic:
    """A TrafficSource whose windows a test scripts: `windows(look)` gives each look's figures per colour."""

    def __init__(self, windows: Callable[[int], dict[str, ColourTraffic]]) -> None:
        self._windows = windows
        self.looks = 0
        self.marks = 0

    @property
    def description(self) -> str:
        return "scripted traffic"

    def mark(self) -> Cursor:
        self.marks += 1
        return Cursor("fake", self.marks)

    def recent(self) -> Cursor:
        return Cursor("fake", 0)

    def since(self, cursor: Cursor) -> Window:
        self.looks += 1
        return Window(self._windows(self.looks))

    def as_source(self) -> TrafficSource:
        return self


def fake_session(
    spec_text: str = SPEC,
    *,
    host: FakeHost | None = None,
    engine: FakeEngine | None = None,
    clock: FakeClock | None = None,
    traffic: FakeTraffic | None = None,
    command: str = "deploy",
    http: httpx.BaseTransport | None = None,
) -> Session:
    loaded = parse_spec_text(spec_text, "bluegreen.yaml")
    host = host or FakeHost()
    return Session(
        loaded=loaded,
        host=host.as_host(),
        layout=Layout(loaded.spec.name, host.home()),
        clock=clock or FakeClock(),
        out=Output(stream=io.StringIO()),
        environ={},
        result=Result(command=command, name=loaded.spec.name),
        _engine=engine or FakeEngine(),
        _traffic=traffic.as_source() if traffic else None,
        http_transport=http,
    )
