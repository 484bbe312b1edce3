"""Model metrics of each colour, from vLLM's own /metrics, judged against `rollout.rollback_on`. Pure.

Names as vLLM's docs list them (v0.10, "Production Metrics"): `vllm:time_to_first_token_seconds` and
`vllm:inter_token_latency_seconds` histograms (`vllm:time_per_output_token_seconds` on older releases),
`vllm:num_requests_waiting` and `vllm:kv_cache_usage_perc` gauges, `vllm:num_preemptions_total` counter.
Figures over a window come from the difference of two scrapes of the histograms, so what happened before
the window (or on the other colour) never counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bgdeploy.plan.metrics import Histogram, counter, delta, gauge, histogram, parse, quantile
from bgdeploy.spec.models import RollbackOn

TTFT = "vllm:time_to_first_token_seconds"
ITL_NAMES = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
WAITING = "vllm:num_requests_waiting"
KV_CACHE = "vllm:kv_cache_usage_perc"
PREEMPTIONS = "vllm:num_preemptions"


@dataclass(frozen=True)
class Snapshot:
    """One scrape of a colour's /metrics (None: the series is not exposed)."""

    ttft: Histogram | None
    itl: Histogram | None
    waiting: float | None
    kv_cache: float | None
    preemptions: float | None


def snapshot(text: str) -> Snapshot:
    samples = parse(text)
    itl = next((h for h in (histogram(samples, name) for name in ITL_NAMES) if h is not None), None)
    return Snapshot(
        ttft=histogram(samples, TTFT),
        itl=itl,
        waiting=gauge(samples, WAITING),
        kv_cache=gauge(samples, KV_CACHE),
        preemptions=counter(samples, PREEMPTIONS),
    )


@dataclass(frozen=True)
class ModelFigures:
    """One colour's model figures over a window: requests (first tokens seen), TTFT/ITL p95, the peak queue."""

    requests: int
    ttft_p95_s: float | None
    itl_p95_s: float | None
    queue_peak: float | None
    kv_cache: float | None  # the latest gauge
    preemptions: float | None  # during the window


def figures(first: Snapshot, latest: Snapshot, queue_peak: float | None) -> ModelFigures:
    ttft = delta(latest.ttft, first.ttft) if latest.ttft and first.ttft else latest.ttft
    itl = delta(latest.itl, first.itl) if latest.itl and first.itl else latest.itl
    preempted = None
    if latest.preemptions is not None:
        preempted = max(0.0, latest.preemptions - (first.preemptions or 0.0))
    return ModelFigures(
        requests=int(ttft.count) if ttft else 0,
        ttft_p95_s=quantile(ttft, 0.95) if ttft else None,
        itl_p95_s=quantile(itl, 0.95) if itl else None,
        queue_peak=queue_peak,
        kv_cache=latest.kv_cache,
        preemptions=preempted,
    )


ModelBreachKind = Literal[
    "ttft_p95", "itl_p95", "max_queue", "ttft_p95_vs_live", "itl_p95_vs_live", "max_queue_vs_live"
]


@dataclass(frozen=True)
class ModelBreach:
    """A model-metrics limit the new colour broke; `baseline` is the old colour's figure for `_vs_live`."""

    kind: ModelBreachKind
    measured: float
    limit: float
    baseline: float | None = None


def wants_model_metrics(limits: RollbackOn) -> bool:
    return any(
        value is not None
        for value in (
            limits.ttft_p95,
            limits.itl_p95,
            limits.max_queue,
            limits.ttft_p95_vs_live,
            limits.itl_p95_vs_live,
            limits.max_queue_vs_live,
        )
    )


def judge_model(
    new: ModelFigures, old: ModelFigures | None, limits: RollbackOn, min_requests: int
) -> tuple[ModelBreach, ...]:
    """Every model-metrics breach of the new colour. Latencies need `min_requests` first tokens on each side
    judged; the queue is judged at once (requests piling up is the breach, however few were served)."""
    found: list[ModelBreach] = []
    if limits.max_queue is not None and new.queue_peak is not None and new.queue_peak > limits.max_queue:
        found.append(ModelBreach("max_queue", new.queue_peak, limits.max_queue))
    if (
        limits.max_queue_vs_live is not None
        and old is not None
        and old.queue_peak
        and new.queue_peak is not None
        and new.queue_peak > limits.max_queue_vs_live * old.queue_peak
    ):
        found.append(
            ModelBreach("max_queue_vs_live", new.queue_peak, limits.max_queue_vs_live * old.queue_peak, old.queue_peak)
        )
    if new.requests < min_requests:
        return tuple(found)
    for kind, limit, value in (
        ("ttft_p95", limits.ttft_p95, new.ttft_p95_s),
        ("itl_p95", limits.itl_p95, new.itl_p95_s),
    ):
        if limit is not None and value is not None and value > limit:
            found.append(ModelBreach(kind, value, limit))  # type: ignore[arg-type]
    if old is not None and old.requests >= min_requests:
        for kind, factor, mine, theirs in (
            ("ttft_p95_vs_live", limits.ttft_p95_vs_live, new.ttft_p95_s, old.ttft_p95_s),
            ("itl_p95_vs_live", limits.itl_p95_vs_live, new.itl_p95_s, old.itl_p95_s),
        ):
            if factor is not None and mine is not None and theirs and mine > factor * theirs:
                found.append(ModelBreach(kind, mine, factor * theirs, theirs))  # type: ignore[arg-type]
    return tuple(found)


def model_breach_text(breach: ModelBreach) -> str:
    names = {
        "ttft_p95": "TTFT p95",
        "itl_p95": "ITL p95",
        "max_queue": "waiting requests (peak)",
        "ttft_p95_vs_live": "TTFT p95",
        "itl_p95_vs_live": "ITL p95",
        "max_queue_vs_live": "waiting requests (peak)",
    }
    name = names[breach.kind]
    queue = breach.kind in ("max_queue", "max_queue_vs_live")

    def shown(value: float) -> str:
        return f"{value:g}" if queue else f"{value * 1000:.0f}ms"

    text = f"{name} {shown(breach.measured)} > {shown(breach.limit)}"
    if breach.baseline is not None:
        text += f" ({breach.limit / breach.baseline:g} × the old colour's {shown(breach.baseline)})"
    return text + f" (rollback_on.{breach.kind})"
