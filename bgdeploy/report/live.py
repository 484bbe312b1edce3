"""Live-traffic verdicts in words: one breach as a sentence, a colour's figures on one line. Pure."""

from __future__ import annotations

from bgdeploy.analysis.verdict import Breach, LiveVerdict
from bgdeploy.plan.verdict import format_rate, format_seconds


def breach_text(breach: Breach) -> str:
    """One breach of rollout.rollback_on as a person reads it."""
    if breach.kind == "any_error":
        return f"{breach.errors} failed of {breach.requests} requests, and max_error_rate is 0%"
    if breach.kind == "error_rate":
        return (
            f"error rate {format_rate(breach.measured)} > {format_rate(breach.limit)} "
            f"({breach.errors} of {breach.requests} requests)"
        )
    if breach.kind == "p95_latency":
        measured, limit = format_seconds(breach.measured), format_seconds(breach.limit)
        return f"p95 latency {measured} > {limit} ({breach.requests} requests)"
    return (
        f"p95 latency {format_seconds(breach.measured)} > {breach.factor:g} × baseline p95 "
        f"{format_seconds(breach.baseline_s or 0.0)} = {format_seconds(breach.limit)}"
    )


def breaches_text(verdict: LiveVerdict) -> str:
    return "; ".join(breach_text(b) for b in verdict.breaches)


def figures(colour: str, verdict: LiveVerdict) -> str:
    """`green 120 req, 1 err (0.83%), p95 850ms`; with the failed statuses: `12 err (10%: 404×10, 502×2)`."""
    return traffic_line(
        colour, verdict.requests, verdict.errors, verdict.error_rate, verdict.p95_latency_s, verdict.error_statuses
    )


def error_statuses_text(statuses: tuple[tuple[int, int], ...]) -> str:
    """`404×10, 502×2, no answer×1`: which failures a client saw."""
    return ", ".join(f"{'no answer' if status == 0 else status}×{count}" for status, count in statuses)


def traffic_line(
    colour: str,
    requests: int,
    errors: int,
    error_rate: float,
    p95_latency_s: float | None,
    error_statuses: tuple[tuple[int, int], ...] = (),
) -> str:
    p95 = format_seconds(p95_latency_s) if p95_latency_s is not None else "-"
    which = f": {error_statuses_text(error_statuses)}" if error_statuses else ""
    return f"{colour} {requests} req, {errors} err ({format_rate(error_rate)}{which}), p95 {p95}"
