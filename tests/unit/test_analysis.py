"""The access-log analysis source: cursors, incremental reads, recent traffic; no host, no sleeps."""

from __future__ import annotations

import json

import pytest

from bgdeploy.analysis.access_log import RECENT_BYTES, AccessLogSource
from bgdeploy.analysis.source import ColourTraffic, Cursor
from bgdeploy.analysis.verdict import judge
from bgdeploy.spec.models import RollbackOn
from tests.fakes import FakeHost

LOG = "/home/deploy/.bgdeploy/chat/router/logs/access.log"


def line(colour: str, status: int = 200, latency: float = 0.1) -> bytes:
    record = {"ts": "1700000000.0", "colour": colour, "status": str(status), "upstream_response_time": str(latency)}
    return json.dumps(record).encode() + b"\n"


def test_a_cursor_sees_only_what_came_after_it() -> None:
    host = FakeHost()
    host.append(LOG, line("blue") * 5)
    source = AccessLogSource(host.as_host(), LOG)
    cursor = source.mark()
    assert source.since(cursor).by_colour == {}
    host.append(LOG, line("green") * 3 + line("blue", 502))
    window = source.since(cursor)
    assert window.of("green") == ColourTraffic(3, 0, 0.1)
    assert window.of("blue") == ColourTraffic(1, 1, 0.1, ((502, 1),))


def test_each_look_reads_only_the_new_bytes_and_keeps_a_half_written_line() -> None:
    host = FakeHost()
    source = AccessLogSource(host.as_host(), LOG)
    cursor = source.mark()
    whole = line("green") * 2
    host.append(LOG, whole[:-10])  # nginx is halfway through the second line
    assert source.since(cursor).of("green").requests == 1
    host.append(LOG, whole[-10:])
    assert source.since(cursor).of("green").requests == 2
    assert source.since(cursor).of("green").requests == 2


def test_recent_skips_the_cut_line_at_its_start() -> None:
    host = FakeHost()
    one = line("green")
    host.append(LOG, one * (RECENT_BYTES // len(one) + 50))
    source = AccessLogSource(host.as_host(), LOG)
    window = source.since(source.recent())
    # The window starts inside a line (or, at a boundary, may): that first line is dropped, every later one counts.
    whole_lines_after_start = RECENT_BYTES // len(one)
    expected = whole_lines_after_start - (1 if RECENT_BYTES % len(one) == 0 else 0)
    assert window.of("green").requests == expected
    small = FakeHost()
    small.append(LOG, one * 3)
    source = AccessLogSource(small.as_host(), LOG)
    assert source.since(source.recent()).of("green").requests == 3


def test_a_cursor_of_another_source_is_refused() -> None:
    source = AccessLogSource(FakeHost().as_host(), LOG)
    with pytest.raises(ValueError):
        source.since(Cursor("prometheus", 1700000000.0))


def test_outcome_is_one_of_three_with_numbers() -> None:
    limits = RollbackOn.model_validate({"max_error_rate": 0.01, "p95_latency": "2s", "min_requests": 20})
    assert judge(ColourTraffic(5, 0, 0.1), limits, min_requests=20).outcome == "inconclusive"
    assert judge(ColourTraffic(50, 0, 0.1), limits, min_requests=20).outcome == "passed"
    breached = judge(ColourTraffic(50, 5, 3.0), limits, min_requests=20)
    assert breached.outcome == "breached"
    assert [(b.kind, b.measured, b.limit) for b in breached.breaches] == [
        ("error_rate", 0.1, 0.01),
        ("p95_latency", 3.0, 2.0),
    ]
