"""Make the previous colour live again: at once when it still runs, after starting and health-checking it
when it was kept stopped. Refuses, changing nothing, when there is nothing to roll back to."""

from __future__ import annotations

from contextlib import AbstractContextManager

from bgdeploy.errors import DeployFailed
from bgdeploy.execute import colours, failpoints
from bgdeploy.execute.clock import utc_now
from bgdeploy.execute.deploy import recover_set_aside
from bgdeploy.execute.observe import observe, release_of
from bgdeploy.execute.router import apply_weights
from bgdeploy.execute.session import Session
from bgdeploy.execute.state_file import read_state, record_state
from bgdeploy.plan.boundaries import RollbackPhase
from bgdeploy.plan.names import Colour, other
from bgdeploy.plan.result import Phase
from bgdeploy.routers.reconcile import reconcile


def _phase(session: Session, name: RollbackPhase) -> AbstractContextManager[Phase]:
    """A rollback phase, entered at its boundary (the fault matrix's failpoint `before:rollback:NAME`)."""
    return failpoints.phase(session, "rollback", name)


def rollback(session: Session) -> None:
    result = session.result
    with _phase(session, "observe"):
        recover_set_aside(session, read_state(session))
        reconcile(session, read_state(session))  # a router pointing at a dead or stale colour is repaired first
        observed = observe(session)
    for warning in observed.warnings:
        session.warn(warning)
    if observed.state.canary is not None:
        raise DeployFailed(
            f"a canary is in progress ({observed.state.canary.weight}% to {observed.state.canary.new}): "
            "`bgdeploy abort` sends all traffic back to the old colour"
        )
    live = observed.live
    result.live_before = live
    result.active_colour = live.colour if live is not None else None
    if live is None:
        raise DeployFailed("nothing is live, so there is nothing to roll back from; deploy first")
    target: Colour = other(live.colour)
    info = observed.container(target)
    if info is None:
        raise DeployFailed(
            f"nothing to roll back to: there is no {target} container (rollout.keep_previous: removed, or it was "
            "never deployed); nothing was changed"
        )
    release = release_of(info, target)
    if observed.state.previous is not None and observed.state.previous.colour == target:
        release = observed.state.previous
    session.set_target(release)
    result.previous_colour = live.colour
    port = session.loaded.spec.runtime.port
    if not info.running:
        with _phase(session, "start"):
            session.out.say(f"rollback: starting the stopped {target} ({release.model})")
            session.engine.start(session.layout.container(target), port)
        try:
            with _phase(session, "wait-ready"):
                info = colours.wait_ready(session, target)
        except DeployFailed:
            session.engine.stop(session.layout.container(target), timeout=10)
            raise
    live_info = observed.container(live.colour)
    ports: dict[Colour, int | None] = {target: info.host_port, live.colour: live_info.host_port if live_info else None}
    with _phase(session, "switch"):
        apply_weights(session, {target: 100}, ports, confirm=target)
    result.active_colour = target  # a later failure (a lost connection) must not say the old colour serves
    with _phase(session, "drain"):
        colours.drain(session, live.colour)
    with _phase(session, "retire"):
        # The rolled-back-from colour is kept stopped at least, so a later rollback can return to it.
        if session.loaded.spec.rollout.keep_previous == "running":
            session.out.say(f"retire: {live.colour} kept running")
        else:
            session.engine.stop(session.layout.container(live.colour), session.loaded.spec.rollout.drain_timeout)
    with _phase(session, "record"):
        record_state(session, observed.state.with_live(release, utc_now()))
    result.outcome = "rolled-back"
    result.active_colour = target
