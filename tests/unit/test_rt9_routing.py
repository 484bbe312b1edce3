"""Red-team (issue #9): the router judgement catches nginx failing every request to colours that are up."""

from __future__ import annotations

import pytest

from bgdeploy.errors import DeployFailed
from bgdeploy.execute import canary, colours
from bgdeploy.execute import deploy as deploy_module
from bgdeploy.plan.routing import ColourFacts, ProbeTally, RouterFacts, judge_router
from tests.fakes import FakeEngine, container
from tests.unit.test_cycle_undo import BLUE, GREEN, cycle_on

UP = ColourFacts(running=True, healthy=True, address="bgdeploy-chat-blue:8000")
DOWN = ColourFacts(running=False, healthy=False, address=None)


def _facts(failing: int) -> RouterFacts:
    return RouterFacts(
        file_weights={"blue": 100},
        file_id="aaaaaaaaaaaa",
        file_addresses={"blue": "bgdeploy-chat-blue:8000"},
        answered=True,
        loaded_id="aaaaaaaaaaaa",
        deployment="chat",
        failing=failing,
    )


def test_nginx_failing_requests_to_a_healthy_colour_is_a_problem_repaired_by_a_reload() -> None:
    # A container-mode colour that came back at another IP: healthy on its own port, 502 through nginx,
    # which still holds the address it resolved when it loaded the config.
    judgement = judge_router("chat", _facts(failing=4), {"blue": UP, "green": DOWN}, live="blue", previous=None)
    assert not judgement.ok
    assert "stale address" in judgement.problems[0]
    assert judgement.repair == {"blue": 100}


def test_a_router_answering_200_is_fine() -> None:
    judgement = judge_router("chat", _facts(failing=0), {"blue": UP, "green": DOWN}, live="blue", previous=None)
    assert judgement.ok


def test_the_tally_counts_answers_that_were_not_200() -> None:
    tally = ProbeTally()
    tally.add({"x-bgdeploy-config": "aaaaaaaaaaaa"}, ready=False)
    tally.add({"x-bgdeploy-config": "aaaaaaaaaaaa"})
    assert (tally.answered, tally.failing, tally.loaded_id()) == (2, 1, "aaaaaaaaaaaa")


def test_undo_after_the_switch_starts_a_stopped_old_colour_instead_of_removing_the_routing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Blue stopped during the bake (by hand, a crash); green fails its bake: route back to a blue started
    # again and health-checked, never take the routing away from every client.
    calls = _record_routing(monkeypatch)
    engine = FakeEngine(container(BLUE, status="exited"), container(GREEN))
    monkeypatch.setattr(colours, "wait_ready", lambda s, c: engine.containers[f"bgdeploy-unit-{c}"])
    cycle_on(engine, old="blue", started=True, switched=True).undo()
    assert ("start", BLUE) in engine.calls and engine.containers[BLUE].running
    assert calls == [("weights", {"blue": 100}), ("drain", "green")]


def test_undo_falls_back_to_removing_the_routing_only_when_the_old_colour_cannot_serve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _record_routing(monkeypatch)
    engine = FakeEngine(container(BLUE, status="exited"), container(GREEN))

    def never_ready(session: object, colour: str) -> None:
        raise DeployFailed("not ready")

    monkeypatch.setattr(colours, "wait_ready", never_ready)
    cycle_on(engine, old="blue", started=True, switched=True).undo()
    assert ("stop", BLUE) in engine.calls and not engine.containers[BLUE].running
    assert calls[0] == ("remove", None)


def _record_routing(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(
        deploy_module, "apply_weights", lambda s, w, p=None, *, confirm: calls.append(("weights", dict(w)))
    )
    monkeypatch.setattr(deploy_module, "remove_routing", lambda s: calls.append(("remove", None)))
    monkeypatch.setattr(colours, "drain", lambda s, c: calls.append(("drain", c)))
    return calls


def test_a_canary_step_ends_at_once_when_the_old_colour_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blue holds 90% at step 1; it stops: the step must not run on for its whole bake with 90% failing.
    from dataclasses import replace

    from tests.fakes import FakeTraffic
    from tests.unit.test_canary_steps import CANARY, HEALTHY, canary_cycle

    holder: list[FakeEngine] = []

    def traffic(look: int) -> dict[str, object]:
        if look >= 1 and holder:
            engine = holder[0]
            engine.containers[BLUE] = replace(engine.containers[BLUE], status="exited")
        return dict(HEALTHY)

    moves: list[tuple[dict[str, int], int | None]] = []
    cycle = canary_cycle(monkeypatch, CANARY, FakeTraffic(traffic), moves)  # type: ignore[arg-type]
    engine = cycle.session.engine
    assert isinstance(engine, FakeEngine)
    holder.append(engine)
    with pytest.raises(DeployFailed, match="old colour blue is exited during the canary step"):
        canary.run_steps(cycle)
    assert moves == [({"blue": 90, "green": 10}, 10)]  # never on to step 2


def test_one_missed_health_probe_does_not_make_a_colour_unhealthy() -> None:
    # A single 503 (a busy server) must not move traffic off the live release to the previous one.
    import httpx

    from bgdeploy.routers.reconcile import _colour_facts
    from tests.fakes import fake_session

    answers = iter([503, 200])
    transport = httpx.MockTransport(lambda request: httpx.Response(next(answers, 503)))
    session = fake_session(http=transport)
    facts = _colour_facts(session, {"blue": container(BLUE), "green": None})
    assert facts["blue"].healthy and not facts["green"].running

    dead = fake_session(http=httpx.MockTransport(lambda request: httpx.Response(503)))
    assert not _colour_facts(dead, {"blue": container(BLUE), "green": None})["blue"].healthy


def test_undo_keeps_a_validated_new_colour_serving_when_the_old_one_cannot_serve_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Blue died during the bake and will not start again; green passed validation and still answers: green
    # keeps every client (recorded as live) instead of the routing being taken away and green removed.
    calls = _record_routing(monkeypatch)
    engine = FakeEngine(container(BLUE, status="exited"), container(GREEN))

    def never_ready(session: object, colour: str) -> None:
        raise DeployFailed("not ready")

    monkeypatch.setattr(colours, "wait_ready", never_ready)
    monkeypatch.setattr(deploy_module, "serves", lambda session, info: info is not None and info.running)
    recorded: list[str] = []
    monkeypatch.setattr(
        deploy_module, "record_state", lambda session, state: recorded.append(state.live.colour if state.live else "")
    )
    cycle = cycle_on(engine, old="blue", started=True, switched=True)
    cycle.undo()
    assert calls == [("weights", {"green": 100})]
    assert cycle.routed == {"green": 100} and recorded == ["green"]
    assert engine.containers[GREEN].running and ("remove", GREEN) not in engine.calls
