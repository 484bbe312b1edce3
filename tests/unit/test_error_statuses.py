"""Client-visible errors in the figures and the reports: which statuses failed, 4xx drifts included."""

from __future__ import annotations

from bgdeploy.analysis.access_log import LiveSample, traffic_of
from bgdeploy.analysis.verdict import judge
from bgdeploy.report.live import figures
from bgdeploy.spec.models import RollbackOn


def samples(n: int, status: int) -> list[LiveSample]:
    return [LiveSample(colour="green", status=status, latency_s=0.1, ts=1000.0 + i) for i in range(n)]


def test_the_failed_statuses_are_counted_most_frequent_first() -> None:
    traffic = traffic_of(
        samples(80, 200) + samples(2, 502) + samples(10, 404) + samples(1, 0) + samples(5, 400), "green"
    )
    assert traffic.errors == 13
    assert traffic.error_statuses == ((404, 10), (502, 2), (0, 1))


def test_the_report_line_says_which_failures_clients_saw() -> None:
    traffic = traffic_of(samples(80, 200) + samples(10, 401) + samples(2, 0), "green")
    verdict = judge(traffic, RollbackOn(), min_requests=20)
    assert verdict.breached
    assert figures("green", verdict) == "green 92 req, 12 err (13.04%: 401×10, no answer×2), p95 100ms"
    clean = judge(traffic_of(samples(30, 200), "green"), RollbackOn(), min_requests=20)
    assert figures("green", clean) == "green 30 req, 0 err (0%), p95 100ms"
