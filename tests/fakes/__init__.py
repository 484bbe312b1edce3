"""Test doubles shared by the unit tests: a host made of a dict of files, a container engine made of a dict,
a clock that only moves when told, scripted live traffic, and a Session built over them."""

from tests.fakes.clock import FakeClock
from tests.fakes.engine import FakeEngine, container
from tests.fakes.host import FakeHost
from tests.fakes.session import FakeTraffic, fake_session

__all__ = ["FakeClock", "FakeEngine", "FakeHost", "FakeTraffic", "container", "fake_session"]
