"""The blue-green cycle: the steps of the plan, carried out in order, with rollback on any failure.

Invariant: the router only ever points at a colour that was healthy and validated. Whatever fails (a
step, a lost connection, SIGINT/SIGTERM), the old colour is routed to again and the new one removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bgdeploy.analysis.source import Cursor
from bgdeploy.capture.replay import validate_with_replay
from bgdeploy.errors import BgdeployError, ConnectionLost, DeployFailed, InternalError
from bgdeploy.execute import canary, colours, failpoints
from bgdeploy.execute.checks import ask_all, describe, watch
from bgdeploy.execute.clock import utc_now
from bgdeploy.execute.evaluate import describe_relative, evaluate
from bgdeploy.execute.observe import Observed, observe
from bgdeploy.execute.router import apply_weights, remove_routing, rotate_access_log, router_port
from bgdeploy.execute.session import Session
from bgdeploy.execute.state_file import read_state, record_state
from bgdeploy.plan.container import spec_release
from bgdeploy.plan.names import COLOURS, Colour, other
from bgdeploy.plan.state import HostState
from bgdeploy.plan.steps import DeployPlan, HostView, StepKind, plan_deploy
from bgdeploy.plan.verdict import Verdict
from bgdeploy.report.live import breaches_text
from bgdeploy.routers.reconcile import reconcile, serves
from bgdeploy.spec.models import Thresholds


def host_view(session: Session, observed: Observed) -> HostView:
    live = observed.live
    stale = {
        colour: info.status
        for colour, info in observed.containers.items()
        if info is not None and (live is None or colour != live.colour)
    }
    router_running = session.router.running()
    new = other(live.colour) if live is not None else "blue"
    return HostView(
        kept=_kept_for_rollback(observed, new),
        live=live,
        live_running=live is not None and observed.running(live.colour),
        stale=stale,
        image_present=session.engine.image_present(session.loaded.spec.runtime.image),
        settings=observed.state.settings,
        router_running=router_running,
    )


def _kept_for_rollback(observed: Observed, colour: Colour) -> bool:
    """The container of `colour` runs the release recorded as previous: the target of a rollback."""
    info = observed.container(colour)
    previous = observed.state.previous
    return (
        info is not None
        and previous is not None
        and previous.colour == colour
        and info.label("spec-hash") == previous.spec_hash
    )


def recover_set_aside(session: Session, state: HostState) -> None:
    """A deploy killed while it had set the previous release aside: put it back before anything else.

    Not while a canary holds it: the canary's new colour runs under the name, the old release waits aside.
    """
    engine = session.engine
    for colour in COLOURS:
        if state.canary is not None and state.canary.new == colour:
            continue
        aside = session.layout.set_aside(colour)
        if engine.inspect(aside) is None:
            continue
        if engine.inspect(session.layout.container(colour)) is None:
            session.warn(f"an interrupted deploy had set the previous {colour} aside; restoring it")
            engine.rename(aside, session.layout.container(colour))
        else:
            engine.remove(aside)


def make_plan(session: Session, *, force: bool = False) -> tuple[Observed, DeployPlan]:
    observed = observe(session)
    for warning in observed.warnings:
        session.warn(warning)
    view = host_view(session, observed)
    plan = plan_deploy(session.loaded.spec, session.loaded.spec_hash, view, force=force)
    blockers: list[str] = []
    if not plan.unchanged and not view.stale.get(plan.new_colour, "").startswith("running"):
        # A leftover running container of the new colour still holds its GPU memory; the check is repeated
        # right before the start, after that container is gone.
        blockers = colours.gpu_blockers(session, plan.new_colour)
    if not plan.unchanged:
        blockers += session.router.preflight()
    session.result.plan = replace(plan, blockers=tuple(blockers))
    session.result.live_before = observed.live
    return observed, session.result.plan


@dataclass
class Cycle:
    session: Session
    observed: Observed
    plan: DeployPlan
    new: Colour
    old: Colour | None
    switched: bool = False
    started: bool = False
    retired: bool = False  # retire ran: the old colour may be stopped or gone, never route back to it
    deployed_at: str = field(default_factory=utc_now)
    host_ports: dict[Colour, int | None] = field(default_factory=dict)
    aside: bool = False  # the previous release of the new colour is set aside (restored on failure)
    aside_was_running: bool = False
    since: Cursor | None = None  # live traffic from the moment all of it moved: what the bake judges
    resume_from: int = 0  # the canary step to begin with (a promoted canary goes on where it paused)
    # What the router serves as far as this cycle knows: the weights it last applied (and nginx confirmed).
    # A failure reports from it what clients reach, never what the cycle meant to do.
    routed: dict[Colour, int] = field(default_factory=dict)
    canary_steps: bool = True  # False: strategy: canary switches at once (a fleet whose first batch was the canary)

    def run(self, first: str | None = None, last: str | None = None) -> None:
        """Carry out the plan's steps in order, from the step named `first` to the one named `last`."""
        started = first is None
        for step in self.plan.steps:
            started = started or step.kind == first
            if not started:
                continue
            failpoints.hit(f"before:{step.kind}", self.session.host)  # the fault matrix's step boundaries
            if step.skip:
                self.session.out.say(f"{step.kind}: skipped ({step.skip})")
            else:
                with self.session.phase(step.kind):
                    STEPS[step.kind](self)
            if step.kind == last:
                return

    # -- the steps, in plan order -----------------------------------------------------------------------

    def step_remove_stale(self) -> None:
        session = self.session
        name = session.layout.container(self.new)
        if _kept_for_rollback(self.observed, self.new):
            info = self.observed.container(self.new)
            was_running = info is not None and info.running
            session.out.say(f"remove-stale: setting the previous {self.new} aside until this deploy succeeds")
            if was_running:  # a hot standby: it takes no traffic, but holds the GPU the new release needs
                session.engine.stop(name, timeout=session.loaded.spec.rollout.drain_timeout)
            session.engine.rename(name, session.layout.set_aside(self.new))
            self.aside_was_running = was_running
            self.aside = True
            return
        session.out.say(f"remove-stale: removing the leftover {self.new} container")
        session.engine.remove(name)

    def step_pull_image(self) -> None:
        image = self.session.loaded.spec.runtime.image
        self.session.out.say(f"pull-image: pulling {image}")
        self.session.engine.pull(image)

    def step_start(self) -> None:
        blockers = colours.gpu_blockers(self.session, self.new)
        if blockers:
            raise DeployFailed("the new colour does not fit on its GPUs: " + "; ".join(blockers))
        self.started = True
        info = colours.start(self.session, self.new, self.session.loaded.spec_hash, self.deployed_at)
        self.host_ports[self.new] = info.host_port

    def step_wait_ready(self) -> None:
        info = colours.wait_ready(self.session, self.new)
        self.host_ports[self.new] = info.host_port

    def step_validate(self) -> None:
        session = self.session
        spec = session.loaded.spec
        port = self.host_ports.get(self.new)
        assert port is not None
        old_info = self.observed.container(self.old) if self.old else None
        live_port: int | None = None
        no_live = "nothing is live"
        if not spec.validation.compare_with_live:
            no_live = "validation.compare_with_live is false"
        elif old_info is not None and old_info.host_port is not None:
            live_port = session.host.reach(old_info.host_port)
        elif self.old is not None:
            no_live = f"the live colour {self.old} has no published port"
        # Both colours get the same prompts at the same time, so relative gates compare like with like.
        found = evaluate(session, session.host.reach(port), live_port, no_live, (self.new, self.old or "live"))
        session.result.validation = found.green
        session.result.live_validation = found.live
        session.result.relative = list(found.relative)
        session.result.datasets = list(found.datasets)
        session.result.load_probe = list(found.load)
        for check in found.relative:
            if not check.judged:
                session.warn(f"validation gate {check.name} {check.actual}")
        session.out.say(f"validate: {self.new}: {describe(found.green)}")
        if not found.green.passed:
            raise DeployFailed(f"validation of {self.new} failed: {describe(found.green)}")
        if not found.passed:
            raise DeployFailed(f"{self.new} is worse than live: {describe_relative(found.relative)}")
        # Captured live requests, replayed on the host against both colours' host ports at once.
        validate_with_replay(session, self.new, port, old_info.host_port if old_info is not None else None)

    def step_router(self) -> None:
        pass  # the first apply_weights starts the router container with its config

    def step_switch(self) -> None:
        session = self.session
        spec = session.loaded.spec
        if self.old is not None:
            old_info = self.observed.container(self.old)
            self.host_ports[self.old] = old_info.host_port if old_info else None
            rotate_access_log(session)
        # For bench/cutover.py: the moment traffic starts to move (a monotonic clock, comparable on one machine).
        session.result.figures["switch_decided_monotonic"] = session.clock.now()
        if spec.rollout.strategy == "canary" and self.canary_steps and self.old is not None:
            canary.run_steps(self)
        session.out.say(f"switch: all traffic to {self.new}")
        self.switched = True
        apply_weights(session, {self.new: 100}, self.host_ports, confirm=self.new)
        self.routed = {self.new: 100}
        self.since = session.traffic.mark()

    def step_smoke(self) -> None:
        session = self.session
        spec = session.loaded.spec
        wanted = [p for p in spec.validation.prompts if p.name in spec.rollout.smoke]
        # Through the router: the live endpoint clients use. Only per-prompt expectations apply here.
        verdict: Verdict = ask_all(session, router_port(session), wanted, Thresholds(pass_rate=1.0, max_error_rate=0))
        session.result.smoke = verdict
        self.alive()
        session.out.say(f"smoke: {describe(verdict)}")
        if not verdict.passed:
            raise DeployFailed(f"smoke test through the router failed after the switch: {describe(verdict)}")

    def step_bake(self) -> None:
        session = self.session
        since = self.since if self.since is not None else session.traffic.mark()
        verdict, _ = watch(session, self.new, None, since, session.loaded.spec.rollout.bake, self.alive)
        session.result.bake = verdict
        if verdict.breached:
            raise DeployFailed("live traffic breached rollout.rollback_on: " + breaches_text(verdict))

    def step_drain(self) -> None:
        assert self.old is not None
        self.alive()  # the old colour is the only way back: never let it go while the new one is not running
        colours.drain(self.session, self.old)

    def step_retire(self) -> None:
        assert self.old is not None
        self.alive()
        self.retired = True
        colours.retire(self.session, self.old)

    def step_record(self) -> None:
        session = self.session
        spec = session.loaded.spec
        release = spec_release(spec, self.new, session.loaded.spec_hash, self.deployed_at)
        state = self.observed.state
        if self.observed.live is not None and (state.live is None or state.live.colour != self.observed.live.colour):
            state = state.with_live(self.observed.live, state.since)
        # The new release serves and passed its bake: a state file that cannot be written never reverts it.
        # Retry, then warn; the next run records what the router serves (converge).
        for attempt in range(1, 4):
            try:
                failpoints.hit("state:write", session.host)
                record_state(session, state.with_live(release, utc_now()).with_settings(session.loaded.settings))
                break
            except BgdeployError as exc:
                if attempt == 3 or not session.host.connected:
                    session.warn(
                        f"{self.new} serves, but state.json could not be written ({exc}); the next bgdeploy run "
                        "records it from what the router serves"
                    )
                    break
                session.clock.sleep(0.5 * attempt)
        if self.aside:
            session.engine.remove(session.layout.set_aside(self.new))

    def alive(self) -> None:
        """The new colour must not die or restart once it takes traffic (Docker would restart it quietly)."""
        name = self.session.layout.container(self.new)
        info = self.session.engine.inspect(name, self.session.loaded.spec.runtime.port)
        if info is None or not info.running or info.restart_count > 0:
            state = "is gone" if info is None else f"{info.status}, restarted {info.restart_count} time(s)"
            logs = self.session.engine.logs(name, colours.LOG_LINES)
            raise colours.ContainerFailed(f"{name} died after taking traffic ({state})", logs)

    # -- failure -------------------------------------------------------------------------------------------

    def undo(self) -> None:
        """Route back to the old colour (when we had switched) and remove the new one. Best effort, loud."""
        session = self.session
        if self.switched and self.retired:
            # Past retire the old colour may be stopped or removed: routing back could route to a dead colour,
            # and the new one passed its bake. It keeps serving; the next run converges the bookkeeping.
            session.warn(f"{self.new} passed its bake and {self.old} is already retired: {self.new} keeps serving")
            return
        if self.switched:
            old_now = session.engine.inspect(session.layout.container(self.old)) if self.old else None
            if self.old is not None and old_now is not None and not old_now.running:
                # The old colour stopped during the deploy (by hand, a crash): start it again rather than take
                # the routing away from every client.
                old_now = colours.start_again(session, self.old)
            if self.old is not None and old_now is not None and old_now.running:
                session.out.say(f"rollback: sending all traffic back to {self.old}")
                apply_weights(session, {self.old: 100}, self.host_ports, confirm=self.old)
                self.routed = {self.old: 100}
            elif self.old is not None and self._keep_new_serving():
                return
            else:
                # First deploy: nothing served before, so nothing may serve a colour that failed.
                session.out.say("rollback: removing the routing (nothing was live before this deploy)")
                remove_routing(session)
                self.routed = {}
        if self.started:
            if self.switched:
                # Clients may still be waiting on answers from the new colour: let them finish first.
                colours.drain(session, self.new)
                session.engine.stop(
                    session.layout.container(self.new), timeout=session.loaded.spec.rollout.drain_timeout
                )
            session.out.say(f"rollback: removing {self.new}")
            session.engine.remove(session.layout.container(self.new))
        if self.aside:
            session.out.say(f"rollback: restoring the previous {self.new}, kept for rollback")
            session.engine.remove(session.layout.container(self.new))
            session.engine.rename(session.layout.set_aside(self.new), session.layout.container(self.new))
            if self.aside_was_running:
                session.engine.start(session.layout.container(self.new), session.loaded.spec.runtime.port)


    def _keep_new_serving(self) -> bool:
        """The old colour cannot serve again (it died during the deploy and would not start): if the new one,
        which passed validation, still answers, it keeps every client rather than nothing serving at all. It
        is recorded as live, so the next run neither plans over it nor removes it as stale."""
        session = self.session
        new_now = session.engine.inspect(session.layout.container(self.new), session.loaded.spec.runtime.port)
        if not serves(session, new_now):
            return False
        session.warn(
            f"{self.old} cannot serve again and {self.new} (validated) still answers: {self.new} keeps serving "
            "instead of nothing; roll back once the previous release can run again"
        )
        apply_weights(session, {self.new: 100}, self.host_ports, confirm=self.new)
        self.routed = {self.new: 100}
        release = spec_release(session.loaded.spec, self.new, session.loaded.spec_hash, self.deployed_at)
        try:
            record_state(session, read_state(session).with_live(release, utc_now()))
        except BgdeployError as exc:
            session.warn(f"state.json could not be written ({exc}); the next bgdeploy run records what serves")
        return True


# Each step of the plan and the method that carries it out: mypy checks the methods, a unit test that every
# StepKind has one.
STEPS: dict[StepKind, Callable[[Cycle], None]] = {
    "remove-stale": Cycle.step_remove_stale,
    "pull-image": Cycle.step_pull_image,
    "start": Cycle.step_start,
    "wait-ready": Cycle.step_wait_ready,
    "validate": Cycle.step_validate,
    "router": Cycle.step_router,
    "switch": Cycle.step_switch,
    "smoke": Cycle.step_smoke,
    "bake": Cycle.step_bake,
    "drain": Cycle.step_drain,
    "retire": Cycle.step_retire,
    "record": Cycle.step_record,
}


def deploy(session: Session, *, force: bool = False, preview: bool = False, canary_steps: bool = True) -> None:
    """Run the cycle; the outcome and every figure land in session.result (raises DeployFailed on failure).

    A preview loads and validates the new colour beside the live one, never routes to it, then removes it.
    canary_steps=False: a strategy: canary spec switches all at once (the fleet ran its canary on another host).
    """
    result = session.result
    with session.phase("observe"):
        recover_set_aside(session, read_state(session))
        reconcile(session, read_state(session))  # what nginx serves must keep the guarantee before anything else
        observed, plan = make_plan(session, force=force)
    if observed.state.canary is not None:
        c = observed.state.canary
        raise DeployFailed(
            f"a canary of {c.release.model} is in progress ({c.weight}% to {c.new}"
            + (f", paused: {c.paused}" if c.paused else "")
            + "): run `bgdeploy promote` to go on or `bgdeploy abort` to send all traffic back first"
        )
    if plan.unchanged:
        session.out.say("unchanged: the spec is already live; nothing to do (use --force to redeploy)")
        converge(session, observed)
        _record_settings(session, observed, plan)
        result.outcome = "unchanged"
        result.active_colour = observed.live.colour if observed.live else None
        return
    old = observed.live.colour if observed.live is not None and observed.running(observed.live.colour) else None
    cycle = Cycle(session, observed, plan, plan.new_colour, old, canary_steps=canary_steps)
    cycle.routed = {old: 100} if old is not None else {}
    session.set_target(spec_release(session.loaded.spec, plan.new_colour, session.loaded.spec_hash, cycle.deployed_at))
    if plan.blockers:
        raise DeployFailed("preflight refused the deploy, nothing was changed: " + "; ".join(plan.blockers))
    result.previous_colour = old
    finish(cycle, last="validate" if preview else None, preview=preview)


def finish(cycle: Cycle, first: str | None = None, last: str | None = None, preview: bool = False) -> None:
    """Run the cycle's steps; on failure undo and raise DeployFailed; on a canary pause record it."""
    session, result, plan, old = cycle.session, cycle.session.result, cycle.plan, cycle.old
    try:
        cycle.run(first=first, last=last)
        if preview:
            with session.phase("cleanup"):
                session.out.say(f"preview: {plan.new_colour} passed; removing it (a preview never takes traffic)")
                cycle.undo()
    except canary.Paused as paused:
        canary.record(cycle, paused=str(paused))
        session.out.say(f"paused: {paused}")
        result.outcome = "paused"
        result.paused = str(paused)
        result.active_colour = old
        return
    except Exception as exc:  # whatever went wrong, undo first (a bug must not leave green loaded)
        crashed = not isinstance(exc, BgdeployError)
        if isinstance(exc, colours.ContainerFailed):
            result.failed_logs = [session.out.mask(line) for line in exc.logs]
        result.failure = f"internal error: {type(exc).__name__}: {exc}" if crashed else str(exc)
        _undo_after_failure(cycle, exc)
        if crashed:
            # Exit 3, but only after the rollback: the caller still writes the report, outputs and status.
            raise InternalError(
                f"{result.failure}; the deploy was rolled back. This is a bug: please report it with the output"
            ) from exc
        raise DeployFailed(result.failure) from None
    except KeyboardInterrupt as exc:
        result.failure = "interrupted (SIGINT/SIGTERM)"
        _undo_after_failure(cycle, exc)
        raise DeployFailed(result.failure) from None
    result.outcome = "previewed" if preview else "deployed"
    result.active_colour = old if preview else plan.new_colour


def _undo_after_failure(cycle: Cycle, exc: BaseException) -> None:
    """Roll back after a failed step; a failing rollback is reported, never raised over the first failure."""
    session, result = cycle.session, cycle.session.result
    if isinstance(exc, ConnectionLost) or not session.host.connected:
        result.failure = (
            f"the SSH connection to {session.host.description} was lost ({exc}); what was already changed on "
            "the host stays as it is: run the same command again, it converges from there"
        )
    try:
        with session.phase("rollback"):
            cycle.undo()
            canary.clear(cycle)
    except Exception as undo_error:  # reported; the first failure is what the user must see
        session.warn(f"rollback did not finish: {undo_error}; run `bgdeploy rollback` or deploy again")
    # What clients reach now, from the weights last applied: after a lost connection past the switch that is
    # the new colour, and the user must not read that the old one still serves.
    served = {colour: weight for colour, weight in cycle.routed.items() if weight > 0}
    result.active_colour = max(served, key=lambda colour: served[colour]) if served else None
    if cycle.new in served and result.failure is not None:
        shares = ", ".join(f"{colour} {weight}%" for colour, weight in sorted(served.items()))
        result.failure += (
            f"; the router still sends traffic to the new release on {cycle.new} ({shares}): it was not rolled back"
        )


def _record_settings(session: Session, observed: Observed, plan: DeployPlan) -> None:
    """Settings that do not change the container (spec/release.py) are applied without reloading the model:
    recorded, so that the next plan is unchanged. A write that fails is a warning, never a failed deploy."""
    if observed.live is None or (observed.state.settings and not plan.changes):
        return
    if plan.changes:
        session.out.say(f"settings only: {plan.changes[0].before} changed; applied without reloading the model")
    try:
        record_state(session, read_state(session).with_settings(session.loaded.settings))
    except BgdeployError as exc:
        session.warn(f"could not record the new settings in state.json ({exc}); the next run records them")


def converge(session: Session, observed: Observed) -> None:
    """After an interrupted deploy the router may already serve the new colour while state.json lags:
    record what serves, and retire the other colour as keep_previous says."""
    live = observed.live
    state = observed.state
    if live is None or (state.live is not None and state.live.colour == live.colour):
        return
    session.warn(f"state.json said {state.live.colour if state.live else 'nothing'} was live; recording {live.colour}")
    record_state(session, state.with_live(live, utc_now()))
    previous = other(live.colour)
    if observed.running(previous) and session.loaded.spec.rollout.keep_previous != "running":
        colours.drain(session, previous)
        colours.retire(session, previous)
