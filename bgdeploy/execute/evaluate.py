"""Validation of a new colour as an LLM: the inline prompts and the eval sets, asked of green and of the live
colour at the same time (streamed: TTFT, ITL, tokens/s), judged absolutely and against live.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bgdeploy.execute.session import Session
from bgdeploy.plan.evaluation import DatasetResult, LoadFigures, dataset_result, load_figures, relative_gates
from bgdeploy.plan.verdict import Answer, Check, Verdict, judge
from bgdeploy.spec.models import Prompt


@dataclass(frozen=True)
class Evaluation:
    green: Verdict
    live: Verdict | None
    relative: tuple[Check, ...]
    datasets: tuple[DatasetResult, ...]
    load: tuple[LoadFigures, ...] = ()

    @property
    def passed(self) -> bool:
        return self.green.passed and all(check.ok for check in self.relative)


def all_prompts(session: Session) -> list[Prompt]:
    """The inline prompts, then each eval set's sampled prompts (their names are `PATH:LINE`, unique)."""
    prompts = list(session.loaded.spec.validation.prompts)
    for dataset in session.loaded.datasets:
        prompts += dataset.prompts
    return prompts


def ask(session: Session, local_port: int, prompts: Sequence[Prompt], concurrency: int | None = None) -> list[Answer]:
    """Every prompt, `validation.concurrency` at a time, streamed unless validation.stream is false."""
    spec = session.loaded.spec
    api_key = session.environ.get(spec.runtime.api_key_env) if spec.runtime.api_key_env else None
    served = spec.model.effective_served_name
    timeout = spec.validation.timeout
    stream = spec.validation.stream
    with (
        session.client(local_port, api_key=api_key, timeout=timeout) as client,
        ThreadPoolExecutor(max_workers=concurrency or spec.validation.concurrency) as pool,
    ):
        return list(pool.map(lambda p: client.ask(p, served, timeout, stream=stream), prompts))


def evaluate(
    session: Session,
    green_port: int,
    live_port: int | None,
    no_live_reason: str,
    colours: tuple[str, str] = ("new", "live"),
) -> Evaluation:
    """Ask green (and live, at the same time, when given) every prompt and judge the answers."""
    spec = session.loaded.spec
    prompts = all_prompts(session)
    thresholds = spec.validation.thresholds
    with ThreadPoolExecutor(max_workers=2) as both:
        green_answers = both.submit(ask, session, green_port, prompts)
        live_answers = both.submit(ask, session, live_port, prompts) if live_port is not None else None
        green = judge(prompts, green_answers.result(), thresholds)
        live = judge(prompts, live_answers.result(), thresholds) if live_answers is not None else None
    relative = relative_gates(thresholds, prompts, green, live, no_live_reason=no_live_reason)
    datasets = tuple(
        dataset_result(
            d.path,
            d.total,
            [p.name for p in d.prompts],
            d.sample,
            d.seed,
            green,
            live,
            spec.validation.failures_shown,
        )
        for d in session.loaded.datasets
    )
    probe: tuple[LoadFigures, ...] = ()
    if spec.validation.load is not None and prompts and green.passed:
        new, old = colours
        probe = load_probe(session, prompts, {new: green_port, **({old: live_port} if live_port else {})})
    return Evaluation(green, live, relative, datasets, probe)


def load_probe(session: Session, prompts: Sequence[Prompt], ports: dict[str, int]) -> tuple[LoadFigures, ...]:
    """validation.load: the same requests (the prompts in turn) to each colour at once, at the same concurrency.

    On a shared GPU this also loads the live colour: it is opt-in and short.
    """
    probe = session.loaded.spec.validation.load
    assert probe is not None
    requests = [prompts[i % len(prompts)] for i in range(probe.requests)]
    session.out.say(
        f"load probe: {probe.requests} requests, {probe.concurrency} at a time, to {' and '.join(ports)}"
        + (" (this loads the live colour too)" if len(ports) > 1 else "")
    )

    def run(port: int) -> tuple[list[Answer], float]:
        start = session.clock.now()
        answers = ask(session, port, requests, probe.concurrency)
        return answers, session.clock.now() - start

    with ThreadPoolExecutor(max_workers=len(ports)) as both:
        futures = {name: both.submit(run, port) for name, port in ports.items()}
        return tuple(load_figures(name, *futures[name].result()) for name in ports)


def describe_relative(checks: Sequence[Check]) -> str:
    """The gates against live that failed, as one line."""
    return "; ".join(f"{c.name} {c.actual} (limit {c.limit})" for c in checks if not c.ok)
