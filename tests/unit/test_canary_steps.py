"""The canary's state machine on fakes: each step is recorded before its weights move, then judged; a breach
fails, too few requests or auto_promote: false pause, all passed goes on. Scripted traffic, a fake clock."""

from __future__ import annotations

import pytest

from bgdeploy.analysis.source import ColourTraffic
from bgdeploy.errors import DeployFailed
from bgdeploy.execute import canary
from bgdeploy.execute.deploy import Cycle
from bgdeploy.execute.observe import Observed
from bgdeploy.execute.state_file import read_state
from bgdeploy.plan.state import HostState, Release
from bgdeploy.plan.steps import HostView, plan_deploy
from tests.fakes import FakeEngine, FakeTraffic, container, fake_session
from tests.fakes.session import SPEC

CANARY = (
    SPEC
    + """\
rollout:
  strategy: canary
  steps:
    - {weight: 10, bake: 30s}
    - {weight: 50, bake: 30s}
  analysis_interval: 10s
  rollback_on: {max_error_rate: 0.01, min_requests: 20}
"""
)

HEALTHY = {"green": ColourTraffic(40, 0, 0.2), "blue": ColourTraffic(360, 0, 0.2)}


def canary_cycle(
    monkeypatch: pytest.MonkeyPatch, spec: str, traffic: FakeTraffic, moves: list[tuple[dict[str, int], int | None]]
) -> Cycle:
    engine = FakeEngine(container("bgdeploy-unit-blue"), container("bgdeploy-unit-green"))
    session = fake_session(spec, engine=engine, traffic=traffic)
    live = Release("blue", "acme/old", "img", "h0", "t0")
    view = HostView(live=live, live_running=True, stale={}, image_present=True, router_running=True)
    plan = plan_deploy(session.loaded.spec, session.loaded.spec_hash, view)
    session.set_target(Release("green", "acme/tiny", "img", session.loaded.spec_hash, "t1"))
    observed = Observed(HostState("unit"), {}, None, None, live, ())
    cycle = Cycle(session, observed, plan, "green", "blue", started=True)

    def weights(session: object, w: dict[str, int], ports: object = None, *, confirm: object) -> None:
        # The step is on the host before any weight moves: a process killed now leaves a known state.
        state = read_state(cycle.session).canary
        moves.append((dict(w), state.weight if state else None))

    monkeypatch.setattr(canary, "apply_weights", weights)  # the routers have their own tests
    return cycle


def test_every_step_passes_and_is_recorded_before_its_weights_move(monkeypatch: pytest.MonkeyPatch) -> None:
    moves: list[tuple[dict[str, int], int | None]] = []
    cycle = canary_cycle(monkeypatch, CANARY, FakeTraffic(lambda look: HEALTHY), moves)
    canary.run_steps(cycle)
    assert moves == [({"blue": 90, "green": 10}, 10), ({"blue": 50, "green": 50}, 50)]
    assert [(r.step, r.weight, r.verdict) for r in cycle.session.result.canary] == [
        (1, 10, "passed"),
        (2, 50, "passed"),
    ]
    assert cycle.session.result.canary[0].new.requests == 40


def test_a_breach_fails_the_step_with_the_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = {"green": ColourTraffic(40, 4, 0.2), "blue": ColourTraffic(360, 0, 0.2)}
    cycle = canary_cycle(monkeypatch, CANARY, FakeTraffic(lambda look: broken), [])
    with pytest.raises(DeployFailed, match=r"canary step 1 \(10% to green\) breached .*error rate 10% > 1%"):
        canary.run_steps(cycle)
    record = cycle.session.result.canary[0]
    assert record.verdict == "breached" and record.new.breaches[0].measured == pytest.approx(0.1)


def test_too_few_requests_pause_at_the_current_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = {"green": ColourTraffic(3, 0, 0.2), "blue": ColourTraffic(30, 0, 0.2)}
    cycle = canary_cycle(monkeypatch, CANARY, FakeTraffic(lambda look: quiet), [])
    with pytest.raises(canary.Paused, match="inconclusive"):
        canary.run_steps(cycle)
    assert [r.verdict for r in cycle.session.result.canary] == ["inconclusive"]
    state = read_state(cycle.session).canary
    assert state is not None and (state.step, state.weight) == (0, 10)


def test_auto_promote_false_holds_after_a_passed_step(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = CANARY + "  auto_promote: false\n"
    cycle = canary_cycle(monkeypatch, spec, FakeTraffic(lambda look: HEALTHY), [])
    with pytest.raises(canary.Paused, match="auto_promote is false"):
        canary.run_steps(cycle)
    assert [r.verdict for r in cycle.session.result.canary] == ["passed"]


def test_a_promoted_canary_goes_on_from_the_next_step(monkeypatch: pytest.MonkeyPatch) -> None:
    moves: list[tuple[dict[str, int], int | None]] = []
    cycle = canary_cycle(monkeypatch, CANARY, FakeTraffic(lambda look: HEALTHY), moves)
    cycle.resume_from = 1
    canary.run_steps(cycle)
    assert [m[0]["green"] for m in moves] == [50]


def test_the_watch_looks_at_each_interval_until_the_bake_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    traffic = FakeTraffic(lambda look: HEALTHY)
    cycle = canary_cycle(monkeypatch, CANARY, traffic, [])
    canary.run_steps(cycle)
    # 30s bakes at 10s intervals: looks at 0, 10, 20 and 30s per step, no real time spent.
    assert traffic.looks == 8
    assert traffic.marks == 2
