"""The cycle's undo paths on fakes: what is removed, restored and routed back, in milliseconds, no Docker."""

from __future__ import annotations

import pytest

from bgdeploy.execute import colours
from bgdeploy.execute import deploy as deploy_module
from bgdeploy.execute.deploy import Cycle
from bgdeploy.execute.observe import Observed
from bgdeploy.plan.names import COLOURS, Colour
from bgdeploy.plan.state import HostState, Release
from bgdeploy.plan.steps import HostView, plan_deploy
from bgdeploy.transports.docker_engine import ContainerInfo
from tests.fakes import FakeEngine, container, fake_session

BLUE, GREEN = "bgdeploy-unit-blue", "bgdeploy-unit-green"


def cycle_on(
    engine: FakeEngine,
    *,
    old: Colour | None,
    started: bool = False,
    switched: bool = False,
    retired: bool = False,
    aside: bool = False,
    aside_was_running: bool = False,
) -> Cycle:
    session = fake_session(engine=engine)
    live = Release("blue", "acme/old", "img", "h0", "t0") if old else None
    view = HostView(live=live, live_running=old is not None, stale={}, image_present=True, router_running=True)
    plan = plan_deploy(session.loaded.spec, session.loaded.spec_hash, view)
    containers: dict[Colour, ContainerInfo | None] = {c: engine.inspect(session.layout.container(c)) for c in COLOURS}
    observed = Observed(HostState("unit"), containers, None, None, live, ())
    new: Colour = "green" if old else "blue"
    cycle = Cycle(session, observed, plan, new, old, switched=switched, started=started, retired=retired)
    cycle.aside, cycle.aside_was_running = aside, aside_was_running
    return cycle


@pytest.fixture
def routing(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """The router verbs the undo calls, recorded instead of run (the routers have their own tests)."""
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(
        deploy_module, "apply_weights", lambda s, w, p=None, *, confirm: calls.append(("weights", dict(w)))
    )
    monkeypatch.setattr(deploy_module, "remove_routing", lambda s: calls.append(("remove", None)))
    monkeypatch.setattr(colours, "drain", lambda s, c: calls.append(("drain", c)))
    return calls


def test_a_failure_before_the_switch_removes_only_the_new_colour(routing: list[tuple[str, object]]) -> None:
    engine = FakeEngine(container(BLUE), container(GREEN))
    cycle_on(engine, old="blue", started=True).undo()
    assert engine.calls == [("remove", GREEN)]
    assert BLUE in engine.containers and routing == []


def test_nothing_started_means_nothing_removed(routing: list[tuple[str, object]]) -> None:
    engine = FakeEngine(container(BLUE))
    cycle_on(engine, old="blue").undo()
    assert engine.calls == [] and routing == []


def test_the_release_kept_for_rollback_comes_back_and_runs_again(routing: list[tuple[str, object]]) -> None:
    engine = FakeEngine(container(BLUE), container(GREEN))
    cycle = cycle_on(engine, old="blue", started=True, aside=True, aside_was_running=True)
    aside = cycle.session.layout.set_aside("green")
    engine.containers[aside] = container(aside, status="exited")  # stopped and set aside by remove-stale
    cycle.undo()
    assert engine.calls == [("remove", GREEN), ("remove", GREEN), ("rename", aside, GREEN), ("start", GREEN)]
    assert engine.containers[GREEN].running


def test_after_the_switch_traffic_goes_back_to_the_old_colour_first(routing: list[tuple[str, object]]) -> None:
    engine = FakeEngine(container(BLUE), container(GREEN))
    cycle_on(engine, old="blue", started=True, switched=True).undo()
    assert routing == [("weights", {"blue": 100}), ("drain", "green")]
    assert engine.calls == [("stop", GREEN), ("remove", GREEN)]


def test_a_failed_first_deploy_after_its_switch_takes_the_routing_away(routing: list[tuple[str, object]]) -> None:
    engine = FakeEngine(container(BLUE))
    cycle_on(engine, old=None, started=True, switched=True).undo()
    assert routing == [("remove", None), ("drain", "blue")]
    assert engine.calls == [("stop", BLUE), ("remove", BLUE)]


def test_past_retire_the_new_colour_keeps_serving(routing: list[tuple[str, object]]) -> None:
    engine = FakeEngine(container(GREEN))
    cycle = cycle_on(engine, old="blue", started=True, switched=True, retired=True)
    cycle.undo()
    assert routing == [] and engine.calls == []
    assert any("keeps serving" in w for w in cycle.session.result.warnings)
