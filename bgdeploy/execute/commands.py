"""The commands that work on a host (plan, deploy, rollback, status): connect, lock, run, record history."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bgdeploy.errors import BgdeployError, DeployFailed
from bgdeploy.execute.clock import Clock, SystemClock, utc_now
from bgdeploy.execute.deploy import deploy, make_plan
from bgdeploy.execute.lock import GuardedClock, default_owner
from bgdeploy.execute.resume import abort, promote
from bgdeploy.execute.rollback import rollback
from bgdeploy.execute.router import rotate_access_log
from bgdeploy.execute.session import Output, Session
from bgdeploy.execute.state_file import append_history
from bgdeploy.execute.status import status
from bgdeploy.modes import HostMode
from bgdeploy.plan.names import Layout
from bgdeploy.plan.result import Result
from bgdeploy.plan.state import damaged_message, state_problems
from bgdeploy.policy.host import check_policy, enforce_policy
from bgdeploy.spec.load import LoadedSpec
from bgdeploy.transports.connect import open_host

if TYPE_CHECKING:
    from bgdeploy.lifecycle.remove import Removal


@contextmanager
def open_session(
    loaded: LoadedSpec,
    command: str,
    *,
    out: Output | None = None,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Session]:
    env = dict(os.environ if environ is None else environ)
    secrets = tuple(env[name] for name in loaded.spec.runtime.secret_env if env.get(name))
    output = out or Output(secrets=secrets)
    output.secrets = tuple(set(output.secrets) | set(secrets))
    result = Result(command=command, name=loaded.spec.name, started_at=utc_now())
    host = open_host(loaded.spec.target, Path(loaded.path).resolve().parent)
    try:
        session = Session(
            loaded=loaded,
            host=host,
            layout=Layout(loaded.spec.name, host.home()),
            clock=clock or SystemClock(),
            out=output,
            environ=env,
            result=result,
        )
        output.say(f"connected to {host.description}")
        yield session
    finally:
        host.close()


def run_plan(session: Session) -> Result:
    """Observe and plan (read-only); a plan with preflight blockers is a failed outcome."""
    with session.phase("observe"):
        _, plan = make_plan(session)
    with session.phase("policy"):
        session.result.policy = check_policy(session.host, session.loaded, session.environ)
    policy = session.result.policy
    if not policy.found:
        session.warn(policy.summary())
    session.result.outcome = "planned"
    if plan.blockers:
        session.result.outcome = "failed"
        session.result.failure = "preflight: " + "; ".join(plan.blockers)
    if policy.problems:
        session.result.outcome = "failed"
        failure = policy.summary() + ": " + "; ".join(f"{p.path}: {p.message}" for p in policy.problems)
        session.result.failure = "; ".join(filter(None, [session.result.failure, failure]))
    return session.result


def _locked(
    session: Session,
    work: Callable[[Session], None],
    *,
    lock_wait: float,
    unlock: bool,
) -> Result:
    result = session.result
    start = time.monotonic()
    # The host policy first: a spec that breaks it changes nothing, not even the lock.
    with session.phase("policy"):
        # Recorded before the refusal, so that the report and the PR comment list every violation.
        result.policy = check_policy(session.host, session.loaded, session.environ)
        enforce_policy(result.policy, session.loaded, session.warn)
    lock = session.take_lock(wait=lock_wait, unlock=unlock)
    for warning in lock.warnings:
        session.warn(warning)
    lock.warnings.clear()
    session.clock = GuardedClock(session.clock, lock)
    try:
        problems = state_problems(session.host.read_file(session.layout.state_file))
        if problems:
            # Never guess from a damaged record: it may hide a canary in progress or the release to roll back to.
            raise DeployFailed(damaged_message(session.layout.state_file, problems) + "; nothing was changed")
        _bound_access_log(session)
        work(session)
    except DeployFailed as exc:
        result.outcome = "failed"
        result.failure = result.failure or str(exc)
    except Exception as exc:
        # An internal error (exit 3) still leaves a history line and a failed result behind.
        result.outcome = "failed"
        result.failure = result.failure or f"internal error: {type(exc).__name__}: {exc}"
        raise
    finally:
        result.duration_s = round(time.monotonic() - start, 3)
        try:
            if result.outcome != "unchanged":
                append_history(session, history_entry(result))
        except BgdeployError as exc:
            session.warn(f"could not append to the history: {exc}")
        lock.release()
        for warning in lock.warnings:
            if warning not in result.warnings:
                session.warn(warning)
    return result


def _bound_access_log(session: Session) -> None:
    """Every command that takes the lock rotates an access log past router.access_log_max (not only a deploy
    that moves traffic), so that any run (an unchanged deploy from a schedule, say) keeps it bounded."""
    try:
        rotate_access_log(session)
    except BgdeployError as exc:
        session.warn(f"could not rotate the router's access log: {exc}")


def run_deploy(session: Session, *, force: bool, lock_wait: float, unlock: bool, preview: bool = False) -> Result:
    return _locked(session, lambda s: deploy(s, force=force, preview=preview), lock_wait=lock_wait, unlock=unlock)


def run_rollback(session: Session, *, lock_wait: float, unlock: bool) -> Result:
    return _locked(session, rollback, lock_wait=lock_wait, unlock=unlock)


def run_promote(session: Session, *, full: bool, lock_wait: float, unlock: bool) -> Result:
    return _locked(session, lambda s: promote(s, full=full), lock_wait=lock_wait, unlock=unlock)


def run_abort(session: Session, *, lock_wait: float, unlock: bool) -> Result:
    return _locked(session, abort, lock_wait=lock_wait, unlock=unlock)


@dataclass(frozen=True)
class Options:
    """How a host command runs, as the command line or the action asks."""

    force: bool = False  # deploy even when the spec is already live
    lock_wait: float = 0.0  # seconds to wait for another run's lock
    unlock: bool = False  # remove the lock first, whoever holds it
    keep_state: bool = False  # remove: keep the state directory
    confirm: Callable[[Removal], bool] = lambda _: True  # remove: asked before anything is removed


def _remove(session: Session, o: Options) -> Result:
    from bgdeploy.lifecycle.remove import run_remove  # lifecycle builds on this module

    return run_remove(session, keep_state=o.keep_state, confirm=o.confirm, lock_wait=o.lock_wait, unlock=o.unlock)


# The one table of what each host mode runs: the CLI's subcommands and the action's modes both look it up.
COMMANDS: dict[HostMode, Callable[[Session, Options], Result]] = {
    "plan": lambda s, o: run_plan(s),
    "preview": lambda s, o: run_deploy(s, force=o.force, lock_wait=o.lock_wait, unlock=o.unlock, preview=True),
    "deploy": lambda s, o: run_deploy(s, force=o.force, lock_wait=o.lock_wait, unlock=o.unlock),
    "rollback": lambda s, o: run_rollback(s, lock_wait=o.lock_wait, unlock=o.unlock),
    "promote": lambda s, o: run_promote(s, full=False, lock_wait=o.lock_wait, unlock=o.unlock),
    "promote-full": lambda s, o: run_promote(s, full=True, lock_wait=o.lock_wait, unlock=o.unlock),
    "abort": lambda s, o: run_abort(s, lock_wait=o.lock_wait, unlock=o.unlock),
    "remove": _remove,
}


def run_status(session: Session) -> dict[str, Any]:
    return status(session)


def history_entry(result: Result) -> dict[str, Any]:
    def release(r: Any) -> dict[str, str] | None:
        return None if r is None else {"colour": r.colour, "model": r.model, "image": r.image}

    return {
        "at": result.started_at,
        "who": default_owner(),
        "command": result.command,
        "outcome": result.outcome,
        "from": release(result.live_before),
        "to": release(result.target),
        "duration_s": result.duration_s,
        "phases": {p.name: p.seconds for p in result.phases},
        "failure": result.failure,
    }
