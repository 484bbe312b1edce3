"""Test doubles shared by the unit tests: a host made of a dict of files, a clock that only moves when told."""

from tests.fakes.clock import FakeClock
from tests.fakes.host import FakeHost

__all__ = ["FakeClock", "FakeHost"]
