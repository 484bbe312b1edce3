"""Asking the validation prompts (to a colour, or through the router) and watching live traffic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from bgdeploy.execute.router import access_log_path
from bgdeploy.execute.session import Session
from bgdeploy.plan.verdict import (
    LiveSample,
    LiveVerdict,
    Verdict,
    format_rate,
    format_seconds,
    judge,
    judge_live,
    parse_access_log,
)
from bgdeploy.spec.durations import format_duration
from bgdeploy.spec.models import Prompt, Thresholds
from bgdeploy.transports.http import ServerClient


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


def watch(
    session: Session,
    new: str,
    old: str | None,
    offset: int,
    seconds: float,
    alive: Callable[[], None] | None = None,
) -> tuple[LiveVerdict, LiveVerdict | None]:
    """Watch the router's access log for `seconds`, judging each colour's live traffic separately.

    `new` is judged against rollout.rollback_on (and, with max_p95_vs_live, against `old`'s p95 over the
    same window); it stops at the first breach. `old`'s figures are for the report. `alive` is called at
    each look and raises when the new colour's container died or restarted meanwhile.
    """
    spec = session.loaded.spec
    limits = spec.rollout.rollback_on
    path = access_log_path(session)
    start = session.clock.now()
    buffer = b""
    samples: list[LiveSample] = []
    last_said = 0.0
    while True:
        chunk = session.host.read_from(path, offset)
        offset += len(chunk)
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        samples += parse_access_log(line.decode(errors="replace") for line in lines)
        baseline = [s for s in samples if s.colour == old] if old else []
        verdict = judge_live(
            samples,
            new,
            limits,
            min_requests=limits.min_requests,
            baseline=baseline,
            max_relative_p95=limits.max_p95_vs_live,
        )
        old_verdict = judge_live(samples, old, limits, min_requests=limits.min_requests) if old else None
        if alive is not None:
            alive()
        elapsed = session.clock.now() - start
        if verdict.breaches or elapsed >= seconds:
            return verdict, old_verdict
        if elapsed - last_said >= 10 or last_said == 0:
            last_said = elapsed or 0.001
            session.out.say(
                f"watch: {elapsed:.0f}s / {format_duration(seconds)}: {figures(new, verdict)}"
                + (f"; {figures(old, old_verdict)}" if old and old_verdict else "")
            )
        session.clock.sleep(min(spec.rollout.analysis_interval, seconds - elapsed))


def figures(colour: str, verdict: LiveVerdict) -> str:
    p95 = format_seconds(verdict.p95_latency_s) if verdict.p95_latency_s is not None else "-"
    return f"{colour} {verdict.requests} req, {verdict.errors} err ({format_rate(verdict.error_rate)}), p95 {p95}"
