"""Canary steps: a share of new requests to the new colour, each colour's live traffic judged separately,
then the next step. A breach sends everything back at once; too few requests to judge, or
`rollout.auto_promote: false`, pauses with the state recorded on the host, so that `bgdeploy promote`
or `bgdeploy abort` can go on from another process (another workflow run) later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from bgdeploy.errors import DeployFailed
from bgdeploy.execute import failpoints
from bgdeploy.execute.analysis_breach import AnalysisBreach
from bgdeploy.execute.checks import watch
from bgdeploy.execute.router import apply_weights
from bgdeploy.execute.session import Session
from bgdeploy.execute.state_file import read_state, record_state
from bgdeploy.plan.boundaries import CanaryPhase, point
from bgdeploy.plan.names import Colour
from bgdeploy.plan.result import CanaryRecord
from bgdeploy.plan.state import CanaryState, HostState
from bgdeploy.report.live import breaches_text, figures


class Cycle(Protocol):
    """What the canary steps need of the deploy cycle (`execute.deploy.Cycle`), so that this module does
    not import the cycle: the cycle calls the steps, and `execute.resume` rebuilds a cycle to go on."""

    session: Session
    new: Colour
    old: Colour | None
    switched: bool
    aside: bool
    aside_was_running: bool
    host_ports: dict[Colour, int | None]
    resume_from: int
    routed: dict[Colour, int]

    def alive(self) -> None: ...


class Paused(Exception):  # a state, not an error: deliberately outside the BgdeployError tree
    """The canary holds at its current weight until `bgdeploy promote` or `bgdeploy abort`."""


def _state(cycle: Cycle) -> HostState:
    return read_state(cycle.session)


def record(cycle: Cycle, *, step: int | None = None, weight: int | None = None, paused: str = "") -> None:
    """Write the canary's position to state.json (before each weight change, and when it pauses)."""
    assert cycle.old is not None and cycle.session.result.target is not None
    current = _state(cycle).canary
    canary = CanaryState(
        new=cycle.new,
        old=cycle.old,
        step=step if step is not None else (current.step if current else 0),
        weight=weight if weight is not None else (current.weight if current else 0),
        release=cycle.session.result.target,
        paused=paused,
        aside=cycle.aside,
        aside_was_running=cycle.aside_was_running,
    )
    record_state(cycle.session, _state(cycle).with_canary(canary))


def clear(cycle: Cycle) -> None:
    state = _state(cycle)
    if state.canary is not None:
        weights = {str(cycle.old): 100} if cycle.old else {}
        record_state(cycle.session, replace(state.with_canary(None), weights=weights))


def _both_alive(cycle: Cycle) -> Callable[[], None]:
    """Each look of a step checks the old colour too: when it stops, its share of requests fails until the step
    ends (minutes); end the canary at once instead (the undo starts it again and routes back, or says why not)."""

    def check() -> None:
        cycle.alive()
        assert cycle.old is not None
        session = cycle.session
        info = session.engine.inspect(session.layout.container(cycle.old), session.loaded.spec.runtime.port)
        if info is None or not info.running:
            state = "is gone" if info is None else f"is {info.status}"
            raise DeployFailed(
                f"the old colour {cycle.old} {state} during the canary step: its share of requests fails; "
                "ending the canary"
            )

    return check


def _boundary(session: Session, name: CanaryPhase) -> None:
    """A canary step's boundary (failpoint `before:canary:NAME`; the list: plan/boundaries.py)."""
    failpoints.hit(point("canary", name), session.host)


def run_steps(cycle: Cycle) -> None:
    """The canary steps from `cycle.resume_from`; returns when all passed (the full switch comes next)."""
    session = cycle.session
    spec = session.loaded.spec
    steps = spec.rollout.steps
    assert cycle.old is not None
    for index in range(cycle.resume_from, len(steps)):
        step = steps[index]
        number = index + 1
        weights: dict[Colour, int] = {cycle.old: 100 - step.weight, cycle.new: step.weight}
        session.out.say(f"canary: step {number}/{len(steps)}: {step.weight}% of new requests to {cycle.new}")
        _boundary(session, "record")
        record(cycle, step=index, weight=step.weight)  # first: a process killed now leaves a known state
        cycle.switched = True
        _boundary(session, "weights")
        apply_weights(session, weights, cycle.host_ports, confirm=None)
        cycle.routed = dict(weights)
        _boundary(session, "watch")
        started = session.clock.now()
        try:
            new, old = watch(session, cycle.new, cycle.old, session.traffic.mark(), step.bake, _both_alive(cycle))
        except AnalysisBreach as breach:
            # Model metrics or a Prometheus query broke a limit: the step is recorded as breached all the same.
            if breach.new is not None:
                held = round(session.clock.now() - started, 3)
                session.result.canary.append(
                    CanaryRecord(number, step.weight, held, breach.new, breach.old, "breached")
                )
            raise DeployFailed(f"canary step {number} ({step.weight}% to {cycle.new}): {breach}") from None
        verdict = new.outcome
        seconds = round(session.clock.now() - started, 3)
        session.result.canary.append(CanaryRecord(number, step.weight, seconds, new, old, verdict))
        session.out.say(
            f"canary: step {number} {verdict}: {figures(cycle.new, new)}"
            + (f"; {figures(cycle.old, old)}" if old else "")
        )
        if new.breached:
            raise DeployFailed(
                f"canary step {number} ({step.weight}% to {cycle.new}) breached rollout.rollback_on after "
                f"{seconds:.0f}s: {breaches_text(new)} ({figures(cycle.new, new)}"
                + (f"; {figures(cycle.old, old)})" if old else ")")
            )
        if new.inconclusive:
            raise Paused(
                f"step {number} ({step.weight}%) was inconclusive: {new.requests} request(s) reached {cycle.new}, "
                f"fewer than rollout.rollback_on.min_requests ({spec.rollout.rollback_on.min_requests}); holding "
                "at this weight: `bgdeploy promote` goes on, `bgdeploy abort` sends all traffic back"
            )
        if not spec.rollout.auto_promote:
            raise Paused(
                f"rollout.auto_promote is false: holding at {step.weight}% after step {number}/{len(steps)}; "
                "`bgdeploy promote` goes on (--full: straight to 100%), `bgdeploy abort` sends all traffic back"
            )
