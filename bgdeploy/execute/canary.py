"""Canary steps: a share of new requests to the new colour, each colour's live traffic judged separately,
then the next step. A breach sends everything back at once; too few requests to judge, or
`rollout.auto_promote: false`, pauses with the state recorded on the host, so that `bgdeploy promote`
or `bgdeploy abort` can go on from another process (another workflow run) later.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bgdeploy.errors import DeployFailed
from bgdeploy.execute.checks import figures, log_offset, watch
from bgdeploy.execute.observe import observe, release_of
from bgdeploy.execute.router import apply_weights
from bgdeploy.execute.session import Session
from bgdeploy.plan.names import Colour
from bgdeploy.plan.result import CanaryRecord
from bgdeploy.plan.state import CanaryState, HostState
from bgdeploy.plan.steps import HostView, plan_deploy

if TYPE_CHECKING:
    from bgdeploy.execute.deploy import Cycle


class Paused(Exception):  # a state, not an error: deliberately outside the BgdeployError tree
    """The canary holds at its current weight until `bgdeploy promote` or `bgdeploy abort`."""


def _state(cycle: Cycle) -> HostState:
    from bgdeploy.execute.deploy import read_state

    return read_state(cycle.session)


def record(cycle: Cycle, *, step: int | None = None, weight: int | None = None, paused: str = "") -> None:
    """Write the canary's position to state.json (before each weight change, and when it pauses)."""
    from bgdeploy.execute.deploy import record_state

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
    from bgdeploy.execute.deploy import record_state

    state = _state(cycle)
    if state.canary is not None:
        weights = {str(cycle.old): 100} if cycle.old else {}
        record_state(cycle.session, replace(state.with_canary(None), weights=weights))


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
        record(cycle, step=index, weight=step.weight)  # first: a process killed now leaves a known state
        cycle.switched = True
        apply_weights(session, weights, cycle.host_ports, confirm=None)
        started = session.clock.now()
        new, old = watch(session, cycle.new, cycle.old, log_offset(session), step.bake, cycle.alive)
        verdict = "breached" if new.breaches else "inconclusive" if new.inconclusive else "passed"
        seconds = round(session.clock.now() - started, 3)
        session.result.canary.append(CanaryRecord(number, step.weight, seconds, new, old, verdict))
        session.out.say(
            f"canary: step {number} {verdict}: {figures(cycle.new, new)}"
            + (f"; {figures(cycle.old, old)}" if old else "")
        )
        if new.breaches:
            raise DeployFailed(
                f"canary step {number} ({step.weight}% to {cycle.new}) breached rollout.rollback_on after "
                f"{seconds:.0f}s: {'; '.join(new.breaches)} ({figures(cycle.new, new)}"
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


def _resume(session: Session, *, need_new: bool) -> tuple[Cycle, CanaryState]:
    """The canary in progress, rebuilt from the host's state as a cycle that can go on or be undone."""
    from bgdeploy.execute.deploy import Cycle

    observed = observe(session)
    canary = observed.state.canary
    if canary is None:
        raise DeployFailed("no canary is in progress on the host, so there is nothing to promote or abort")
    info = observed.container(canary.new)
    if need_new and (info is None or not info.running):
        raise DeployFailed(
            f"the canary's {canary.new} container is not running; run `bgdeploy abort` to send all traffic back"
        )
    state = observed.state
    old_info = observed.container(canary.old)
    if state.live is not None and state.live.colour == canary.old:
        old_release = state.live
    elif old_info is not None:
        old_release = release_of(old_info, canary.old)
    else:
        raise DeployFailed(f"the canary's old colour {canary.old} has no container: nothing to send traffic back to")
    # The old colour is the live one until the canary completes, whatever share it has now.
    observed = replace(observed, live=old_release)
    view = HostView(live=old_release, live_running=True, stale={}, image_present=True, router_running=True)
    plan = plan_deploy(session.loaded.spec, session.loaded.spec_hash, view, force=True)
    cycle = Cycle(
        session,
        observed,
        plan,
        canary.new,
        canary.old,
        switched=True,
        started=True,
        deployed_at=canary.release.deployed_at,
        aside=canary.aside,
        aside_was_running=canary.aside_was_running,
    )
    cycle.host_ports = {
        canary.new: info.host_port if info else None,
        canary.old: old_info.host_port if old_info else None,
    }
    session.set_target(canary.release)
    session.result.live_before = old_release
    session.result.previous_colour = canary.old
    return cycle, canary


def promote(session: Session, *, full: bool) -> None:
    """Go on with a paused canary: the next step (or straight to 100% with `full`), then finish the deploy."""
    from bgdeploy.execute.deploy import finish

    with session.phase("observe"):
        cycle, canary = _resume(session, need_new=True)
    if session.loaded.spec_hash != canary.release.spec_hash:
        raise DeployFailed(
            f"the spec changed since the canary of {canary.release.model} started; promote with the spec it "
            "runs, or `bgdeploy abort` and deploy the new spec"
        )
    steps = len(session.loaded.spec.rollout.steps)
    cycle.resume_from = steps if full else canary.step + 1
    going = "straight to 100%" if cycle.resume_from >= steps else f"with step {cycle.resume_from + 1}"
    session.out.say(f"promote: {canary.new} at {canary.weight}%, going on {going}")
    record(cycle, paused="")
    finish(cycle, first="switch")


def abort(session: Session) -> None:
    """Send all traffic back to the old colour and remove the canary's new colour."""
    with session.phase("observe"):
        cycle, canary = _resume(session, need_new=False)
    session.out.say(f"abort: sending all traffic back to {canary.old}, removing {canary.new}")
    with session.phase("abort"):
        cycle.undo()
        clear(cycle)
    session.result.outcome = "aborted"
    session.result.active_colour = canary.old
