"""Judging one colour's live traffic against `rollout.rollback_on`: one typed outcome, with numbers. Pure.

The outcome is "passed", "breached" or "inconclusive" (too few requests to judge). Each breach carries the
measured figure and the limit as numbers; `bgdeploy.report.live` turns them into sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bgdeploy.analysis.source import ColourTraffic
from bgdeploy.spec.models import RollbackOn

# Ratios computed from counts (9/10) and limits written as decimals (0.9) may differ in the last bit.
_EPSILON = 1e-9

LiveOutcome = Literal["passed", "breached", "inconclusive"]
LIVE_OUTCOMES: tuple[LiveOutcome, ...] = ("passed", "breached", "inconclusive")

BreachKind = Literal["error_rate", "p95_latency", "p95_vs_live", "any_error"]


@dataclass(frozen=True)
class Breach:
    """One limit of rollout.rollback_on that live traffic broke.

    - error_rate: `measured` error rate > `limit` (rates from 0 to 1);
    - p95_latency: `measured` p95 seconds > `limit` seconds;
    - p95_vs_live: `measured` p95 seconds > `limit` = `factor` × `baseline_s` (the old colour's p95);
    - any_error: errors with max_error_rate 0, before min_requests were reached (`measured` = error rate).
    """

    kind: BreachKind
    measured: float
    limit: float
    requests: int
    errors: int
    baseline_s: float | None = None
    factor: float | None = None


@dataclass(frozen=True)
class LiveVerdict:
    """One colour's live traffic, judged: the outcome, the figures, and every breach."""

    outcome: LiveOutcome
    requests: int
    errors: int
    error_rate: float
    p95_latency_s: float | None
    breaches: tuple[Breach, ...] = ()
    error_statuses: tuple[tuple[int, int], ...] = ()  # (HTTP status, count) of the failed requests

    @property
    def breached(self) -> bool:
        return self.outcome == "breached"

    @property
    def inconclusive(self) -> bool:
        return self.outcome == "inconclusive"


def judge(
    traffic: ColourTraffic,
    rollback_on: RollbackOn,
    *,
    min_requests: int = 20,
    baseline: ColourTraffic | None = None,
    max_relative_p95: float | None = None,
) -> LiveVerdict:
    """Judge one colour's traffic against the rollback limits (and optionally the old colour's p95).

    Latency is over all the colour's requests, errors included: a timeout is slow traffic too.
    """
    requests, errors, p95 = traffic.requests, traffic.errors, traffic.p95_latency_s
    error_rate = traffic.error_rate

    def verdict(outcome: LiveOutcome, breaches: Sequence[Breach] = ()) -> LiveVerdict:
        return LiveVerdict(outcome, requests, errors, error_rate, p95, tuple(breaches), traffic.error_statuses)

    if requests < min_requests:
        # Too few requests for rates to mean anything, except that with zero tolerance a single error is a breach.
        if errors > 0 and rollback_on.max_error_rate == 0:
            return verdict("breached", [Breach("any_error", error_rate, 0.0, requests, errors)])
        return verdict("inconclusive")

    breaches: list[Breach] = []
    if error_rate > rollback_on.max_error_rate + _EPSILON:
        breaches.append(Breach("error_rate", error_rate, rollback_on.max_error_rate, requests, errors))
    if p95 is not None and rollback_on.p95_latency is not None and p95 > rollback_on.p95_latency:
        breaches.append(Breach("p95_latency", p95, rollback_on.p95_latency, requests, errors))
    if (
        p95 is not None
        and max_relative_p95 is not None
        and baseline is not None
        and baseline.requests >= min_requests
        and baseline.p95_latency_s is not None
        and p95 > max_relative_p95 * baseline.p95_latency_s
    ):
        limit = max_relative_p95 * baseline.p95_latency_s
        breaches.append(Breach("p95_vs_live", p95, limit, requests, errors, baseline.p95_latency_s, max_relative_p95))
    return verdict("breached" if breaches else "passed", breaches)
