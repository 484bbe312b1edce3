"""The bake after the full switch, on fakes: scripted live traffic judged at each look, a fake clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bgdeploy.analysis.source import ColourTraffic
from bgdeploy.errors import DeployFailed
from bgdeploy.execute.colours import ContainerFailed
from bgdeploy.execute.deploy import Cycle
from bgdeploy.execute.observe import Observed
from bgdeploy.plan.state import HostState
from bgdeploy.plan.steps import HostView, plan_deploy
from tests.fakes import FakeClock, FakeEngine, FakeTraffic, container, fake_session
from tests.fakes.session import SPEC

BAKE = (
    SPEC + "rollout:\n  bake: 60s\n  analysis_interval: 10s\n  rollback_on: {max_error_rate: 0.01, min_requests: 20}\n"
)
BLUE = "bgdeploy-unit-blue"


def bake_cycle(traffic: FakeTraffic, engine: FakeEngine, clock: FakeClock) -> Cycle:
    session = fake_session(BAKE, engine=engine, traffic=traffic, clock=clock)
    view = HostView(live=None, live_running=False, stale={}, image_present=True, router_running=True)
    plan = plan_deploy(session.loaded.spec, session.loaded.spec_hash, view)
    return Cycle(session, Observed(HostState("unit"), {}, None, None, None, ()), plan, "blue", None, switched=True)


def test_a_healthy_bake_passes_after_the_whole_bake_time() -> None:
    clock = FakeClock()
    cycle = bake_cycle(
        FakeTraffic(lambda look: {"blue": ColourTraffic(50 * look, 0, 0.1)}), FakeEngine(container(BLUE)), clock
    )
    cycle.step_bake()
    bake = cycle.session.result.bake
    assert bake is not None and bake.outcome == "passed" and bake.requests == 350
    assert sum(clock.sleeps) == 60


def test_a_breach_stops_the_bake_at_once() -> None:
    traffic = FakeTraffic(lambda look: {"blue": ColourTraffic(100, 0 if look < 3 else 5, 0.1)})
    clock = FakeClock()
    cycle = bake_cycle(traffic, FakeEngine(container(BLUE)), clock)
    with pytest.raises(DeployFailed, match=r"breached rollout.rollback_on: error rate 5% > 1% \(5 of 100 requests\)"):
        cycle.step_bake()
    assert traffic.looks == 3 and sum(clock.sleeps) == 20


def test_a_restart_of_the_new_colour_fails_the_bake() -> None:
    engine = FakeEngine(replace(container(BLUE), restart_count=1))
    cycle = bake_cycle(FakeTraffic(lambda look: {}), engine, FakeClock())
    with pytest.raises(ContainerFailed, match="died after taking traffic"):
        cycle.step_bake()
