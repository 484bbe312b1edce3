"""`bgdeploy promote` and `bgdeploy abort`: a paused canary, rebuilt from the host's state as a deploy cycle
that goes on from where it paused, or is undone.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import replace

from bgdeploy.errors import DeployFailed
from bgdeploy.execute import colours, failpoints
from bgdeploy.execute.canary import clear, record
from bgdeploy.execute.deploy import Cycle, finish
from bgdeploy.execute.observe import observe, release_of
from bgdeploy.execute.session import Session
from bgdeploy.plan.boundaries import AbortPhase, PromotePhase
from bgdeploy.plan.result import Phase
from bgdeploy.plan.state import CanaryState
from bgdeploy.plan.steps import HostView, plan_deploy
from bgdeploy.routers.reconcile import reconcile


def _promote_phase(session: Session, name: PromotePhase) -> AbstractContextManager[Phase]:
    """A promote phase, entered at its boundary (failpoint `before:promote:NAME`)."""
    return failpoints.phase(session, "promote", name)


def _abort_phase(session: Session, name: AbortPhase) -> AbstractContextManager[Phase]:
    """An abort phase, entered at its boundary (failpoint `before:abort:NAME`)."""
    return failpoints.phase(session, "abort", name)


def _resume(session: Session, *, need_new: bool) -> tuple[Cycle, CanaryState]:
    """The canary in progress, rebuilt from the host's state as a cycle that can go on or be undone."""
    reconcile(session, observe(session).state)  # a router pointing at a dead or stale colour is repaired first
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
    cycle.routed = {canary.old: 100 - canary.weight, canary.new: canary.weight}
    session.set_target(canary.release)
    session.result.live_before = old_release
    session.result.previous_colour = canary.old
    return cycle, canary


def promote(session: Session, *, full: bool) -> None:
    """Go on with a paused canary: the next step (or straight to 100% with `full`), then finish the deploy."""
    with _promote_phase(session, "observe"):
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
    with _promote_phase(session, "resume"):
        record(cycle, paused="")
    finish(cycle, first="switch")


def _old_colour_ready(session: Session, canary: CanaryState) -> None:
    """The old colour must run and answer before traffic goes back to it: the undo would otherwise take the
    routing away and remove the canary's colour, the only one serving (an outage). A stopped old colour is
    started and health-checked, as a rollback does; one that cannot serve refuses the abort, changing nothing."""
    name = session.layout.container(canary.old)
    info = session.engine.inspect(name, session.loaded.spec.runtime.port)
    if info is not None and info.running:
        return
    keep = f"{canary.new} keeps serving; `bgdeploy promote --full` makes it live, or fix {canary.old} and abort again"
    if info is None:
        raise DeployFailed(
            f"cannot abort: the old colour {canary.old} has no container to send traffic back to; {keep}"
        )
    with _abort_phase(session, "start"):
        started = colours.start_again(session, canary.old)
    if started is None:
        raise DeployFailed(f"cannot abort: {canary.old} ({info.status}) did not become ready again; {keep}")


def abort(session: Session) -> None:
    """Send all traffic back to the old colour and remove the canary's new colour."""
    with _abort_phase(session, "observe"):
        cycle, canary = _resume(session, need_new=False)
    _old_colour_ready(session, canary)
    session.out.say(f"abort: sending all traffic back to {canary.old}, removing {canary.new}")
    # Until the undo routes back, the canary's weights are what clients reach (a failure must say so).
    session.result.active_colour = canary.old if canary.weight < 50 else canary.new
    with _abort_phase(session, "undo"):
        cycle.undo()
    with _abort_phase(session, "clear"):
        clear(cycle)
    session.result.outcome = "aborted"
    session.result.active_colour = canary.old
