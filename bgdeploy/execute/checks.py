"""Asking the validation prompts (to a colour, or through the router) and watching live traffic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from bgdeploy.analysis.model_metrics import wants_model_metrics
from bgdeploy.analysis.source import Cursor
from bgdeploy.analysis.verdict import LiveVerdict
from bgdeploy.analysis.verdict import judge as judge_live
from bgdeploy.execute.analysis_breach import AnalysisBreach
from bgdeploy.execute.model_watch import ModelWatch, judge_models
from bgdeploy.execute.prometheus_watch import PrometheusWatch
from bgdeploy.execute.session import Session
from bgdeploy.plan.verdict import Verdict, judge
from bgdeploy.report.live import figures
from bgdeploy.spec.durations import format_duration
from bgdeploy.spec.models import Prompt, Thresholds


def ask_all(session: Session, local_port: int, prompts: Sequence[Prompt], thresholds: Thresholds) -> Verdict:
    """Every prompt, `validation.concurrency` at a time, judged against expectations and thresholds."""
    spec = session.loaded.spec
    api_key = session.environ.get(spec.runtime.api_key_env) if spec.runtime.api_key_env else None
    served = spec.model.effective_served_name
    with (
        session.client(local_port, api_key=api_key, timeout=spec.validation.timeout) as client,
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


def watch(
    session: Session,
    new: str,
    old: str | None,
    since: Cursor,
    seconds: float,
    alive: Callable[[], None] | None = None,
) -> tuple[LiveVerdict, LiveVerdict | None]:
    """Watch live traffic from `since` for `seconds`, judging each colour's traffic separately.

    `new` is judged against rollout.rollback_on (and, with max_p95_vs_live, against `old`'s p95 over the
    same window); it stops at the first breach. `old`'s figures are for the report. `alive` is called at
    each look and raises when the new colour's container died or restarted meanwhile.
    """
    spec = session.loaded.spec
    limits = spec.rollout.rollback_on
    start = session.clock.now()
    last_said = 0.0
    # vLLM's own metrics, scraped from each colour directly, when rollback_on has a model-metrics limit.
    models = ModelWatch.start(session, [new, old] if old else [new]) if wants_model_metrics(limits) else None
    queries = PrometheusWatch.start(session)
    try:
        return _watch(session, new, old, since, seconds, alive, models, queries, start, last_said)
    finally:
        if models is not None:
            models.close()
        if queries is not None:
            queries.close()


def _watch(
    session: Session,
    new: str,
    old: str | None,
    since: Cursor,
    seconds: float,
    alive: Callable[[], None] | None,
    models: ModelWatch | None,
    queries: PrometheusWatch | None,
    start: float,
    last_said: float,
) -> tuple[LiveVerdict, LiveVerdict | None]:
    spec = session.loaded.spec
    limits = spec.rollout.rollback_on
    while True:
        window = session.traffic.since(since)
        baseline = window.of(old) if old else None
        verdict = judge_live(
            window.of(new),
            limits,
            min_requests=limits.min_requests,
            baseline=baseline,
            max_relative_p95=limits.max_p95_vs_live,
        )
        old_verdict = judge_live(baseline, limits, min_requests=limits.min_requests) if baseline is not None else None
        if alive is not None:
            alive()
        elapsed = session.clock.now() - start
        try:
            if queries is not None:
                queries.look(new, old, elapsed)
            if models is not None:
                traffic = {new: verdict, **({old: old_verdict} if old else {})}
                judge_models(session, models, new, old, elapsed, traffic)
        except AnalysisBreach as breach:
            raise breach.during(verdict, old_verdict, elapsed) from None
        if verdict.breached or elapsed >= seconds:
            return verdict, old_verdict
        if elapsed - last_said >= 10 or last_said == 0:
            last_said = elapsed or 0.001
            session.out.say(
                f"watch: {elapsed:.0f}s / {format_duration(seconds)}: {figures(new, verdict)}"
                + (f"; {figures(old, old_verdict)}" if old and old_verdict else "")
            )
        session.clock.sleep(min(spec.rollout.analysis_interval, seconds - elapsed))
