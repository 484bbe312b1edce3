"""Run a command on every host of a fleet: connect in parallel, lock in a fixed order, preflight everywhere,
then the single-host cycle batch by batch, a fleet gate after each batch, and a fleet-wide rollback.

The single-host cycle is used through its public functions (`deploy`, `rollback`, `run_plan`, `status`);
this module only decides where and when they run, and what the fleet as a whole did.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

from bgdeploy.errors import BgdeployError, DeployFailed
from bgdeploy.execute.clock import Clock, SystemClock, utc_now
from bgdeploy.execute.commands import history_entry, open_session, run_plan
from bgdeploy.execute.deploy import deploy
from bgdeploy.execute.lock import HostLock, force_unlock
from bgdeploy.execute.observe import observe
from bgdeploy.execute.resume import abort
from bgdeploy.execute.rollback import rollback
from bgdeploy.execute.router import router_port
from bgdeploy.execute.session import Output, Session
from bgdeploy.execute.state_file import append_history, read_state
from bgdeploy.execute.status import status
from bgdeploy.fleet.batches import plan_batches, too_many_failures
from bgdeploy.fleet.members import Member, lock_order, where
from bgdeploy.fleet.result import FleetResult, HostReport
from bgdeploy.plan.result import Result
from bgdeploy.plan.state import damaged_message, state_problems
from bgdeploy.spec.load import LoadedSpec
from bgdeploy.transports.http import ServerClient

T = TypeVar("T")


@dataclass
class HostOutput(Output):
    """Progress lines of one host, each starting with its label: the hosts of a batch print interleaved."""

    label: str = ""

    def say(self, message: str) -> None:
        super().say(f"{self.label}: {message}")


@dataclass
class Node:
    """One host of the fleet while a command runs: its member, its open session and its lock."""

    member: Member
    session: Session
    report: HostReport
    lock: HostLock | None = None


@dataclass
class Fleet:
    """The open fleet of one command (all hosts connected), with the fleet's result."""

    loaded: LoadedSpec
    nodes: list[Node]
    result: FleetResult
    out: Output
    clock: Clock
    warnings_lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, message: str) -> None:
        self.out.say(f"fleet: {message}")

    def warn(self, message: str) -> None:
        with self.warnings_lock:
            self.result.warnings.append(message)
        self.out.warn(f"fleet: {message}")


def parallel(work: Callable[[T], None], items: Sequence[T]) -> None:
    """`work` on every item at once, each in its own thread; Ctrl-C / SIGTERM reaches every one of them.

    The signal lands in the main thread; it is passed on as KeyboardInterrupt into each worker, where the
    single-host cycle undoes what it started, as it does when run alone. Then it is raised here again.
    """
    if not items:
        return
    with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="bgdeploy-fleet") as pool:
        idents: dict[int, int] = {}
        interrupted = threading.Event()

        def run(index: int, item: T) -> None:
            idents[index] = threading.get_ident()
            if interrupted.is_set():  # the signal came before this worker registered: do not start the work
                raise KeyboardInterrupt
            work(item)

        futures: list[Future[None]] = []
        try:
            # Submitting is inside the try: a signal while the workers start reaches the ones already running.
            for i, item in enumerate(items):
                futures.append(pool.submit(run, i, item))
            for future in futures:
                _wait(future)
        except KeyboardInterrupt:
            interrupted.set()  # first: a worker registering after the loop below sees it and does not start
            for ident in list(idents.values()):
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
            for future in futures:
                with contextlib.suppress(BaseException):
                    future.result()
            raise
        for future in futures:
            future.result()  # an internal error in one host's work is raised here, after all have finished


def _wait(future: Future[None]) -> None:
    # Waiting in short slices keeps the main thread able to take a signal at once.
    while not future.done():
        with contextlib.suppress(TimeoutError):
            future.exception(timeout=0.5)


@contextlib.contextmanager
def open_fleet(
    loaded: LoadedSpec,
    chosen: Sequence[Member],
    command: str,
    *,
    stream: TextIO | None = None,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Fleet]:
    """Connect to every chosen host in parallel, one verified SSH connection each.

    A host that cannot be reached is a blocker of the whole command: the fleet is not opened and nothing
    changes anywhere (raises FleetBlocked with every host's reason).
    """
    clock = clock or SystemClock()
    out = Output(stream=stream) if stream is not None else Output()
    result = FleetResult(command=command, name=loaded.spec.name, started_at=utc_now())
    opened: dict[int, tuple[contextlib.AbstractContextManager[Session], Session]] = {}
    reports = {m.index: HostReport(label=m.label, address=m.address) for m in chosen}
    started = time.monotonic()

    def connect(member: Member) -> None:
        host_out = HostOutput(stream=out.stream, start=out.start, label=member.label)
        manager = open_session(dataclasses.replace(loaded, spec=member.spec), command, out=host_out, environ=environ)
        try:
            session = manager.__enter__()
        except BgdeployError as exc:
            reports[member.index].outcome = "blocked"
            reports[member.index].blockers.append(f"cannot connect: {exc}")
            return
        opened[member.index] = (manager, session)

    try:
        parallel(connect, list(chosen))
        result.figures["connect_s"] = round(time.monotonic() - started, 3)
        result.hosts = [reports[m.index] for m in chosen]
        nodes = [Node(m, opened[m.index][1], reports[m.index]) for m in chosen if m.index in opened]
        fleet = Fleet(loaded, nodes, result, out, clock)
        if len(nodes) < len(chosen):
            result.outcome = "blocked"
            result.failure = "not every host could be reached; nothing was changed on any host"
            raise FleetBlocked(fleet)
        yield fleet
    finally:
        for manager, _ in opened.values():
            with contextlib.suppress(Exception):
                manager.__exit__(None, None, None)
        result.duration_s = round(time.monotonic() - started, 3)


class FleetBlocked(DeployFailed):
    """The fleet command was refused before anything changed; the fleet's result says why, host by host."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(fleet.result.failure or "refused by the fleet preflight")
        self.fleet = fleet


# -- locks ------------------------------------------------------------------------------------------------


def resolve_address(host: str) -> str:
    """The lowest IP address `host` resolves to here: the same for every spelling of one host (an IP, a name,
    another case), so the lock order is too. Raises OSError when it does not resolve (the name is used)."""
    found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return min(str(info[4][0]) for info in found)


def lock_all(fleet: Fleet, *, lock_wait: float, unlock: bool) -> None:
    """Take every host's deploy lock, one after the other in a fixed order (by address), so that two fleet
    deploys over the same hosts cannot each hold a lock the other waits for. Any lock held elsewhere:
    release ours and refuse (FleetBlocked), nothing changed."""
    by_index = {node.member.index: node for node in fleet.nodes}
    seen: dict[tuple[str, int], Node] = {}
    for node in fleet.nodes:
        # One machine listed twice (an IP and a name for it): its second lock would wait on its first.
        address = where(node.member, resolve_address)
        first = seen.setdefault(address, node)
        if first is not node:
            node.report.outcome = "blocked"
            node.report.blockers.append(f"the same host as {first.member.label} ({address[0]}:{address[1]})")
            fleet.result.outcome = "blocked"
            fleet.result.failure = (
                f"{first.member.label} and {node.member.label} are the same host ({address[0]}:{address[1]}); "
                "list it once in target.hosts. Nothing was changed on any host"
            )
            raise FleetBlocked(fleet)
    try:
        _lock_in_order(fleet, by_index, lock_wait=lock_wait, unlock=unlock)
    except BaseException:
        # Ctrl-C, SIGTERM or an unexpected error half way: the locks already taken go too (else they would
        # block the next deploy of these hosts until they are stale).
        release_all(fleet)
        raise


def _lock_in_order(fleet: Fleet, by_index: dict[int, Node], *, lock_wait: float, unlock: bool) -> None:
    for member in lock_order([n.member for n in fleet.nodes], resolve=resolve_address):
        node = by_index[member.index]
        session = node.session
        if unlock:
            holder = force_unlock(session.host, session.layout.lock_file)
            if holder:
                session.warn(f"removed the lock held by {holder} (--force-unlock)")
        lock = HostLock(session.host, session.layout.lock_file, session.clock)
        try:
            lock.acquire(lock_wait)
        except BgdeployError as exc:
            node.report.outcome = "blocked"
            node.report.blockers.append(str(exc))
            release_all(fleet)
            fleet.result.outcome = "blocked"
            fleet.result.failure = f"{member.label} is locked by another deploy; nothing was changed on any host"
            raise FleetBlocked(fleet) from None
        node.lock = lock
        for warning in lock.warnings:
            session.warn(warning)


def release_all(fleet: Fleet) -> None:
    for node in fleet.nodes:
        if node.lock is not None:
            node.lock.release()
            for warning in node.lock.warnings:
                node.session.warn(warning)
            node.lock = None


def _fresh(node: Node, command: str) -> Result:
    """A new single-host result for the next piece of work on this host."""
    result = Result(command=command, name=node.session.loaded.spec.name, started_at=utc_now())
    node.session.result = result
    return result


def _record(node: Node, result: Result, fleet: Fleet, batch: int | None) -> None:
    entry: dict[str, Any] = history_entry(result)
    entry["fleet"] = {"hosts": len(fleet.result.hosts), "host": node.member.label, "batch": batch}
    try:
        append_history(node.session, entry)
    except BgdeployError as exc:
        node.session.warn(f"could not append to the history: {exc}")


# -- preflight --------------------------------------------------------------------------------------------


def preflight(fleet: Fleet, *, force: bool = False, pull: bool = True) -> None:
    """Observe and plan every host in parallel; every blocker anywhere is recorded with its host.

    Checks per host: a readable state, no canary in progress, the GPU fit, the router port, the host policy
    (all as the single-host plan checks them) and the image: one missing is pulled now, and a pull that fails
    is a blocker, since it would fail mid-rollout otherwise. Images are pulled only once every host passed its
    checks: a blocker anywhere leaves every host as it was, its disk included. Changes nothing that serves.
    """
    started = time.monotonic()
    to_pull: list[Node] = []
    pull_lock = threading.Lock()

    def check(node: Node) -> None:
        session = node.session
        report = node.report
        problems = state_problems(session.host.read_file(session.layout.state_file))
        if problems:
            report.blockers.append(damaged_message(session.layout.state_file, problems))
            return
        state = read_state(session)
        if state.canary is not None:
            report.blockers.append(
                f"a canary of {state.canary.release.model} is in progress ({state.canary.weight}% to "
                f"{state.canary.new}): promote or abort it on this host first"
            )
        planned = _fresh(node, "plan")
        run_plan(session)
        report.before = planned.live_before
        plan = planned.plan
        if plan is None:
            report.blockers.append(planned.failure or "the host could not be planned")
            return
        report.blockers += list(plan.blockers)
        if planned.outcome == "failed" and planned.failure != "preflight: " + "; ".join(plan.blockers):
            report.blockers.append(planned.failure or "preflight failed")
        if planned.policy is not None and planned.policy.problems:
            return  # the host policy refuses this spec: not even its image is pulled there
        if pull and not force and plan.unchanged:
            return
        if pull and not report.blockers and any(s.kind == "pull-image" and not s.skip for s in plan.steps):
            with pull_lock:
                to_pull.append(node)

    def fetch(node: Node) -> None:
        session = node.session
        image = session.loaded.spec.runtime.image
        session.out.say(f"preflight: {image} is not on the host; pulling it now")
        try:
            session.engine.pull(image)
        except BgdeployError as exc:
            node.report.blockers.append(
                f"the image {image} is not on this host and could not be pulled ({exc}); load or push it there"
            )

    parallel(lambda node: _guard(node, check), fleet.nodes)
    if not any(n.report.blockers for n in fleet.nodes):
        parallel(lambda node: _guard(node, fetch), to_pull)
    for node in fleet.nodes:
        if node.report.blockers:
            node.report.outcome = "blocked"
    fleet.result.figures["preflight_s"] = round(time.monotonic() - started, 3)
    blocked = [n.member.label for n in fleet.nodes if n.report.blockers]
    if blocked:
        fleet.result.outcome = "blocked"
        fleet.result.failure = f"preflight found blockers on {', '.join(blocked)}; nothing was changed on any host"


def _guard(node: Node, work: Callable[[Node], None]) -> None:
    """A host's work whose failure is that host's blocker, never the others' problem."""
    try:
        work(node)
    except BgdeployError as exc:
        node.report.blockers.append(str(exc))


# -- deploy -----------------------------------------------------------------------------------------------


def deploy_fleet(fleet: Fleet, *, force: bool = False) -> None:
    """Preflight everywhere, then the hosts that need the release batch by batch, with a gate after each."""
    spec = fleet.loaded.spec
    settings = spec.rollout.fleet
    preflight(fleet, force=force)
    if fleet.result.outcome == "blocked":
        return
    # By model and image: each host's spec hash differs anyway (its own target.host is part of it).
    releases = {(n.report.before.model, n.report.before.image) if n.report.before else None for n in fleet.nodes}
    if len(releases) > 1:
        fleet.warn(
            "the hosts were on different releases: "
            + ", ".join(f"{label}: {model}" for label, model in fleet.result.releases_before().items())
            + "; this deploy converges them"
        )
    changing = [n for n in fleet.nodes if force or not _unchanged(n)]
    steady = [n for n in fleet.nodes if n not in changing]
    # Unchanged hosts still go through the cycle: it is quick, and it converges a host an interrupted deploy
    # left switched but unrecorded.
    parallel(lambda node: _deploy_one(fleet, node, None, force), steady)
    failed_steady = [n.member.label for n in steady if n.report.outcome == "failed"]
    if too_many_failures(len(failed_steady), settings.max_failed_hosts):
        # Known before any host switched: no host is moved only to be rolled back again.
        fleet.result.failure = (
            f"{len(failed_steady)} host(s) already on the release failed ({', '.join(failed_steady)}), more than "
            f"rollout.fleet.max_failed_hosts ({settings.max_failed_hosts}): the rollout stopped before its first "
            "batch; no host was switched"
        )
        fleet.say(fleet.result.failure)
        fleet.result.outcome = "failed"
        return
    batches = plan_batches(changing, settings.first_batch, settings.batch, len(fleet.result.hosts))
    fleet.result.batches = [[n.member.label for n in b] for b in batches]
    every_host = spec.rollout.strategy == "canary" and settings.canary == "every-host"
    canary_pending = canary_first(fleet, steady, len(batches))
    switched: list[Node] = []
    for number, batch in enumerate(batches, start=1):
        steps = every_host or canary_pending
        fleet.say(
            f"batch {number}/{len(batches)}: {', '.join(n.member.label for n in batch)}"
            + (" (the fleet's canary: canary steps)" if canary_pending else "")
        )
        try:
            parallel(
                lambda node, number=number, steps=steps: _deploy_one(fleet, node, number, force, steps),  # type: ignore[misc]
                batch,
            )
        except KeyboardInterrupt:
            # Each host of the batch undid its own cycle (the single-host interrupt path) before this is raised.
            fleet.result.failure = (
                f"interrupted (SIGINT/SIGTERM) during batch {number}: its hosts were rolled back; hosts switched by "
                "an earlier batch stay on the new release, hosts not reached stay untouched (deploy again to go on)"
            )
            fleet.say(fleet.result.failure)
            raise
        switched += [n for n in batch if n.report.outcome == "deployed"]
        if settings.pause and any(n.report.outcome == "deployed" for n in batch):
            fleet.say(f"pause: {settings.pause:g}s before the fleet gate")
            fleet.clock.sleep(settings.pause)
        for node in batch:
            if node.report.outcome == "deployed":
                problem = gate(node)
                if problem:
                    node.report.failure = f"fleet gate: {problem}"
                    node.report.outcome = "failed"
                    fleet.warn(f"{node.member.label} failed the fleet gate: {problem}")
        # A host that failed the gate and was rolled back still counts: its failure stays on its report.
        failed = [n for n in fleet.nodes if n.report.outcome == "failed" or n.report.failure]
        gate_failed = [n for n in batch if n.report.outcome == "failed" and n in switched]
        if too_many_failures(len(failed), settings.max_failed_hosts):
            stopped = (
                f"{len(failed)} host(s) failed ({', '.join(n.member.label for n in failed)}), more than "
                f"rollout.fleet.max_failed_hosts ({settings.max_failed_hosts}): the rollout stopped at batch {number}"
            )
            fleet.say(stopped)
            # A paused canary (strategy: canary) sends part of its traffic to the new release: it goes back too.
            paused = [n for n in fleet.nodes if n.report.outcome == "paused"]
            back = [n for n in switched if n.report.outcome == "deployed"] + gate_failed + paused
            roll_back(fleet, back)
            stuck = [n.member.label for n in back if n.report.outcome != "rolled-back"]
            fleet.result.failure = stopped + (
                f"; the rollback failed on {', '.join(stuck)} (still on the new release: `bgdeploy rollback --host`)"
                if stuck
                else " and every host it switched was rolled back"
            )
            fleet.result.outcome = "failed"
            return
        # A host that failed the gate within the tolerance goes back on its own.
        roll_back(fleet, gate_failed)
        if canary_pending and any(n.report.outcome == "deployed" for n in batch):
            canary_pending = False  # a host passed the canary steps and the fleet gate: the rest switch at once
        if any(n.report.outcome == "paused" for n in batch):
            fleet.result.outcome = "paused"
            fleet.result.failure = "a canary paused; `bgdeploy promote` on the paused host(s), then deploy again"
            return
    outcomes = {n.report.outcome for n in fleet.nodes}
    if any(n.report.outcome == "failed" or n.report.failure for n in fleet.nodes):
        fleet.result.outcome = "partial"
        fleet.result.failure = (
            "some hosts failed (within rollout.fleet.max_failed_hosts); they still serve the old release"
        )
    elif outcomes <= {"unchanged"}:
        fleet.result.outcome = "unchanged"
    else:
        fleet.result.outcome = "deployed"


def canary_first(fleet: Fleet, steady: Sequence[Node], batches: int) -> bool:
    """Whether the first batch is the fleet's canary (strategy: canary, rollout.fleet.canary: first-batch).

    Its hosts run the canary steps; once one of them passed them and the fleet gate, the other batches switch
    all at once (a batch whose every host failed within max_failed_hosts proved nothing: the next batch is
    the canary). A host already on this release (a first batch promoted by hand after a pause, a rollout
    resumed) means the canary has passed: no batch runs the steps again. every-host: see deploy_fleet.
    """
    spec = fleet.loaded.spec
    if spec.rollout.strategy != "canary" or spec.rollout.fleet.canary != "first-batch" or not batches:
        return False
    if any(n.report.outcome == "unchanged" for n in steady):
        fleet.say("the release already serves on some hosts, so its canary passed: every batch switches at once")
        return False
    if batches > 1:
        fleet.say(
            "batch 1 is the canary (rollout.fleet.canary: first-batch); once it passes, the others switch at once"
        )
    return True


def _unchanged(node: Node) -> bool:
    plan = node.session.result.plan
    return plan is not None and plan.unchanged


def _deploy_one(fleet: Fleet, node: Node, batch: int | None, force: bool, canary_steps: bool = True) -> None:
    report = node.report
    report.batch = batch
    result = _fresh(node, "deploy")
    report.result = result
    started = time.monotonic()
    try:
        deploy(node.session, force=force, canary_steps=canary_steps)
    except DeployFailed as exc:
        result.outcome = "failed"
        result.failure = result.failure or str(exc)
    except BgdeployError as exc:  # a lost connection and the like: this host failed, the others go on
        result.outcome = "failed"
        result.failure = result.failure or str(exc)
    except Exception as exc:  # an error nothing wrapped (a socket reset): still this host's failure
        # Raised out of the batch, it would skip the fleet gate and the fleet-wide rollback of the hosts
        # already switched; as this host's failure, the stop rule rolls them back.
        result.outcome = "failed"
        result.failure = result.failure or f"internal error on this host: {type(exc).__name__}: {exc}"
    finally:
        result.duration_s = round(time.monotonic() - started, 3)
        report.seconds = result.duration_s
        if result.outcome != "unchanged":
            _record(node, result, fleet, batch)
    report.outcome = result.outcome if result.outcome in ("deployed", "unchanged", "paused") else "failed"
    report.failure = result.failure if report.outcome == "failed" else None
    report.after = result.target if report.outcome == "deployed" else report.before


def gate(node: Node) -> str | None:
    """The fleet gate of one host after its batch: the router serves the new colour, which runs and answers."""
    session = node.session
    result = node.report.result
    active = result.active_colour if result else None
    try:
        observed = observe(session)
        if observed.live is None or observed.live.colour != active:
            serving = observed.live.colour if observed.live else "nothing"
            return f"the router serves {serving}, not {active}"
        if not observed.running(observed.live.colour):
            return f"{active} is not running"
        spec = session.loaded.spec
        with ServerClient(f"http://127.0.0.1:{router_port(session)}", timeout=spec.health.timeout) as client:
            probe = client.probe(spec.health.path, timeout=spec.health.timeout)
        if probe.state != "ready":
            return f"{spec.health.path} through the router: {probe.state} ({probe.detail})"
    except BgdeployError as exc:
        return str(exc)
    return None


def roll_back(fleet: Fleet, nodes: Sequence[Node]) -> None:
    """Roll every one of these hosts back to the release it served before this deploy, all at once."""
    if not nodes:
        return
    fleet.say(f"rolling back {', '.join(n.member.label for n in nodes)}")

    def back(node: Node) -> None:
        result = _fresh(node, "rollback")
        node.report.rollback = result
        started = time.monotonic()
        try:
            if node.report.outcome == "paused":
                abort(node.session)  # a canary in progress: all traffic back to the old colour
            else:
                rollback(node.session)
            node.report.outcome = "rolled-back"
            node.report.after = node.report.before
        except Exception as exc:  # one host's rollback failing must not stop the others'
            why = str(exc) if isinstance(exc, BgdeployError) else f"internal error: {type(exc).__name__}: {exc}"
            result.outcome = "failed"
            result.failure = result.failure or why
            # It still serves the new release: a failed host, not a deployed one.
            node.report.outcome = "failed"
            earlier = f"{node.report.failure}; " if node.report.failure else ""  # a failed gate stays said
            node.report.failure = f"{earlier}the rollback did not finish: {why}"
            fleet.warn(f"{node.member.label}: the rollback did not finish: {why}; run `bgdeploy rollback --host`")
        finally:
            result.duration_s = round(time.monotonic() - started, 3)
            _record(node, result, fleet, node.report.batch)

    parallel(back, nodes)


# -- rollback, plan, status of the whole fleet -----------------------------------------------------------


def rollback_fleet(fleet: Fleet) -> None:
    """Every chosen host back to its previous release, in parallel; a host that cannot is reported."""

    def back(node: Node) -> None:
        result = _fresh(node, "rollback")
        node.report.result = result
        started = time.monotonic()
        try:
            rollback(node.session)
        except BgdeployError as exc:
            result.outcome = "failed"
            result.failure = result.failure or str(exc)
        except Exception as exc:  # an error nothing wrapped: this host's failure, the others still go back
            result.outcome = "failed"
            result.failure = result.failure or f"internal error on this host: {type(exc).__name__}: {exc}"
        finally:
            result.duration_s = node.report.seconds = round(time.monotonic() - started, 3)
            _record(node, result, fleet, None)
        node.report.before = result.live_before
        node.report.outcome = "rolled-back" if result.outcome == "rolled-back" else "failed"
        node.report.failure = result.failure if node.report.outcome == "failed" else None
        node.report.after = result.target if node.report.outcome == "rolled-back" else result.live_before

    parallel(back, fleet.nodes)
    failed = [n.member.label for n in fleet.nodes if n.report.outcome == "failed"]
    fleet.result.outcome = "failed" if failed else "rolled-back"
    if failed:
        fleet.result.failure = f"the rollback failed on {', '.join(failed)}"


def plan_fleet(fleet: Fleet) -> None:
    """The read-only plan of every host, and the batches a deploy would make."""
    preflight(fleet, pull=False)
    for node in fleet.nodes:
        node.report.result = node.session.result
        if not node.report.blockers:
            node.report.outcome = "unchanged" if _unchanged(node) else "planned"
    settings = fleet.loaded.spec.rollout.fleet
    changing = [n.member.label for n in fleet.nodes if n.report.outcome == "planned"]
    fleet.result.batches = plan_batches(changing, settings.first_batch, settings.batch, len(fleet.result.hosts))
    if fleet.result.outcome != "blocked":
        fleet.result.outcome = "planned"


def status_fleet(fleet: Fleet) -> dict[str, Any]:
    """Each host's status, and whether the hosts serve the same release."""
    data: dict[str, dict[str, Any]] = {}

    def look(node: Node) -> None:
        try:
            data[node.member.label] = status(node.session)
        except BgdeployError as exc:
            data[node.member.label] = {"error": str(exc)}
        except Exception as exc:  # an error nothing wrapped: this host's error, the others are still shown
            data[node.member.label] = {"error": f"internal error: {type(exc).__name__}: {exc}"}

    parallel(look, fleet.nodes)
    ordered = {n.member.label: data[n.member.label] for n in fleet.nodes}
    releases = {label: (d.get("live") or {}).get("model") if "error" not in d else None for label, d in ordered.items()}
    return {
        "name": fleet.loaded.spec.name,
        "hosts": ordered,
        "releases": releases,
        # As deploy_fleet compares them: by model and image (one image upgrade of the same model is a release).
        "converged": len({_live_release(d) for d in ordered.values()}) <= 1,
    }


def _live_release(data: dict[str, Any]) -> tuple[Any, Any] | None:
    if "error" in data:
        return None
    live = data.get("live") or {}
    return live.get("model"), live.get("image")
