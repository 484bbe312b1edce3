"""Asking the validation prompts (to a colour, or through the router) and watching live traffic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from bgdeploy.execute.router import access_log_path
from bgdeploy.execute.session import Session
from bgdeploy.plan.verdict import LiveVerdict, Verdict, judge, judge_live, parse_access_log
from bgdeploy.spec.durations import format_duration
from bgdeploy.spec.models import Prompt, Thresholds
from bgdeploy.transports.http import ServerClient

BAKE_INTERVAL = 5.0


def ask_all(session: Session, local_port: int, prompts: Sequence[Prompt], thresholds: Thresholds) -> Verdict:
    """Every prompt, `validation.concurrency` at a time, judged against expectations and thresholds."""
    spec = session.loaded.spec
    api_key = session.environ.get(spec.runtime.api_key_env) if spec.runtime.api_key_env else None
    served = spec.model.effective_served_name
    base = f"http://127.0.0.1:{local_port}"
    with (
        ServerClient(base, api_key=api_key, timeout=spec.validation.timeout) as client,
        ThreadPoolExecutor(max_workers=spec.validation.concurrency) as pool,
    ):
        answers = list(pool.map(lambda p: client.ask(p, served, spec.validation.timeout), prompts))
    return judge(prompts, answers, thresholds)


def describe(verdict: Verdict) -> str:
    failed = [r for r in verdict.results if not r.passed]
    parts = [f"{len(verdict.results) - len(failed)}/{len(verdict.results)} prompts passed"]
    parts += [f"{r.name}: {'; '.join(r.failures)}" for r in failed[:5]]
    parts += [f"{c.name} {c.actual} (limit {c.limit})" for c in verdict.checks if not c.ok]
    return ", ".join(parts)


def log_offset(session: Session) -> int:
    """Where the access log ends now: the bake reads only what comes after."""
    return session.host.size(access_log_path(session))


def bake(
    session: Session, colour: str, offset: int, seconds: float, alive: Callable[[], None] | None = None
) -> LiveVerdict:
    """Watch the router's access log for `seconds`, judging `colour`'s live traffic against rollback_on.

    Stops at the first breach. Returns the verdict over the whole window. `alive` is called at each
    look and raises when the colour's container died or restarted meanwhile.
    """
    spec = session.loaded.spec
    path = access_log_path(session)
    start = session.clock.now()
    buffer = b""
    samples = []
    verdict = judge_live([], colour, spec.rollout.rollback_on)
    while True:
        chunk = session.host.read_from(path, offset)
        offset += len(chunk)
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        samples += parse_access_log(line.decode(errors="replace") for line in lines)
        verdict = judge_live(samples, colour, spec.rollout.rollback_on)
        if alive is not None:
            alive()
        elapsed = session.clock.now() - start
        if verdict.breaches:
            return verdict
        if elapsed >= seconds:
            return verdict
        session.out.say(
            f"bake: {elapsed:.0f}s / {format_duration(seconds)}, {verdict.requests} request(s) to "
            f"{colour}, {verdict.errors} error(s)"
        )
        session.clock.sleep(min(BAKE_INTERVAL, seconds - elapsed))
