"""Validation and live-traffic verdicts: every rule, its message, and the thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from bgdeploy.analysis.access_log import LiveSample, parse_access_log, traffic_of
from bgdeploy.analysis.verdict import LiveVerdict
from bgdeploy.analysis.verdict import judge as judge_traffic
from bgdeploy.plan.verdict import Answer, Check, judge, judge_answer, percentile
from bgdeploy.report.live import breach_text
from bgdeploy.spec.models import Prompt, RollbackOn, Thresholds


def prompt(name: str = "capital", **expect: Any) -> Prompt:
    return Prompt.model_validate({"name": name, "chat": "What is the capital of France?", "expect": expect})


def ok(text: str, name: str = "capital", latency_s: float = 0.5) -> Answer:
    return Answer(prompt=name, text=text, latency_s=latency_s, status=200, error=None)


def failed(name: str = "capital", error: str = "HTTP 500: engine dead", status: int | None = 500) -> Answer:
    return Answer(prompt=name, text=None, latency_s=0.1, status=status, error=error)


def failures(p: Prompt, text: str, latency_s: float = 0.5) -> tuple[str, ...]:
    result = judge_answer(p, ok(text, p.name, latency_s))
    assert result.passed == (not result.failures)
    return result.failures


# --- expectations -----------------------------------------------------------------------------------------


def test_no_rules_passes_any_answer() -> None:
    assert failures(prompt(), "") == ()


def test_contains() -> None:
    p = prompt(contains=["Paris", "France"])
    assert failures(p, "Paris is the capital of France.") == ()
    assert failures(p, "Paris, of course.") == ('missing "France"',)
    assert failures(prompt(contains="Paris"), "Lyon") == ('missing "Paris"',)


def test_any_of() -> None:
    p = prompt(any_of=["Paris", "paris"])
    assert failures(p, "it's paris") == ()
    assert failures(p, "Lyon") == ('none of "Paris", "paris" found',)


def test_not_contains() -> None:
    p = prompt(not_contains=["Berlin", "Madrid"])
    assert failures(p, "Paris") == ()
    assert failures(p, "Not Berlin but Paris") == ('contains forbidden "Berlin"',)


def test_regex() -> None:
    p = prompt(regex=r"\b36\b")
    assert failures(p, "6 × 6 = 36.") == ()
    assert failures(p, "366") == (r"regex /\b36\b/ did not match",)


def test_equals_compares_stripped_text() -> None:
    p = prompt(equals="4")
    assert failures(p, "  4\n") == ()
    assert failures(p, "5") == ('expected exactly "4", got "5"',)


def test_equals_quotes_long_answers_shortened_on_one_line() -> None:
    (reason,) = failures(prompt(equals="4"), "line one\n" + "x" * 200)
    assert reason.startswith('expected exactly "4", got "line one\\nxxx')
    assert reason.endswith('…"')
    assert "\n" not in reason


def test_json_is_strict() -> None:
    p = prompt(json=True)
    assert p.expect.json_valid
    assert failures(p, ' {"city": "Paris"}\n') == ()
    assert failures(p, "Sure! Here it is") == ("not valid JSON (Expecting value at char 0)",)
    assert failures(p, '```json\n{"city": "Paris"}\n```') == ("not valid JSON (Expecting value at char 0)",)


def test_max_latency() -> None:
    p = prompt(max_latency="2s")
    assert failures(p, "Paris", latency_s=1.99) == ()
    assert failures(p, "Paris", latency_s=2.31) == ("took 2.31s, more than max_latency 2s",)
    assert failures(p, "Paris", latency_s=2.001) == ("took 2.001s, more than max_latency 2s",)
    assert failures(prompt(max_latency="500ms"), "Paris", latency_s=0.85) == (
        "took 850ms, more than max_latency 500ms",
    )


def test_ignore_case_applies_to_all_text_rules() -> None:
    p = prompt(contains="PARIS", any_of=["FRANCE"], not_contains="berlin", regex="^paris", ignore_case=True)
    assert failures(p, "Paris, France") == ()
    assert failures(p, "Paris, France, not BERLIN") == ('contains forbidden "berlin"',)
    assert failures(prompt(equals="PARIS", ignore_case=True), " paris ") == ()
    assert failures(prompt(equals="PARIS"), "paris") == ('expected exactly "PARIS", got "paris"',)
    assert failures(prompt(regex="^paris"), "Paris") == ("regex /^paris/ did not match",)


def test_every_failing_rule_is_listed() -> None:
    p = prompt(contains="Paris", not_contains="Berlin", equals="Paris", max_latency="1s")
    assert failures(p, "Berlin", latency_s=3) == (
        'missing "Paris"',
        'contains forbidden "Berlin"',
        'expected exactly "Paris", got "Berlin"',
        "took 3s, more than max_latency 1s",
    )


def test_failed_request_fails_with_its_error() -> None:
    result = judge_answer(prompt(contains="Paris"), failed(error="timed out after 60s", status=None))
    assert not result.passed
    assert result.failures == ("timed out after 60s",)
    assert judge_answer(prompt(), failed(error="")).failures == ("HTTP 500",)


# --- percentile -------------------------------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    assert percentile([], 95) is None
    assert percentile([3.0], 95) == 3.0
    values = [float(v) for v in range(1, 21)]  # 1..20: the 95th percentile is the 19th value, not the 20th
    assert percentile(values, 95) == 19.0
    assert percentile(list(reversed(values)), 50) == 10.0
    assert percentile(values, 100) == 20.0
    assert percentile(values, 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 95) == 10.0
    with pytest.raises(ValueError):
        percentile(values, 101)


# --- thresholds -------------------------------------------------------------------------------------------


def thresholds(**values: Any) -> Thresholds:
    return Thresholds.model_validate(values)


def two_prompts() -> list[Prompt]:
    return [prompt("capital", contains="Paris"), prompt("math", equals="4")]


def test_all_passing() -> None:
    verdict = judge(two_prompts(), [ok("Paris"), ok("4", "math", 1.2)], thresholds(p95_latency="2s"))
    assert verdict.passed
    assert verdict.pass_rate == 1.0
    assert verdict.error_rate == 0.0
    assert verdict.p95_latency_s == 1.2
    assert [(c.name, c.limit, c.actual, c.ok) for c in verdict.checks] == [
        ("pass rate", "≥ 100%", "100% (2 of 2 prompts)", True),
        ("error rate", "≤ 0%", "0% (0 of 2 requests)", True),
        ("p95 latency", "≤ 2s", "1.2s", True),
    ]
    assert [r.name for r in verdict.results] == ["capital", "math"]


def test_pass_rate_half_with_one_of_two() -> None:
    answers = [ok("Lyon"), ok("4", "math")]
    assert judge(two_prompts(), answers, thresholds(pass_rate=0.5)).passed
    verdict = judge(two_prompts(), answers, thresholds())
    assert not verdict.passed
    assert verdict.pass_rate == 0.5
    (pass_check, error_check) = verdict.checks
    assert (pass_check.actual, pass_check.ok) == ("50% (1 of 2 prompts)", False)
    assert error_check.ok


def test_pass_rate_at_a_decimal_limit() -> None:
    prompts = [prompt(f"p{i}", contains="yes") for i in range(10)]
    answers = [ok("yes" if i < 9 else "no", f"p{i}") for i in range(10)]
    assert judge(prompts, answers, thresholds(pass_rate=0.9)).passed
    assert not judge(prompts, answers, thresholds(pass_rate=0.91)).passed


def test_error_answers_count_against_error_rate_and_are_left_out_of_latency() -> None:
    answers = [failed(), ok("4", "math", 0.85)]
    verdict = judge(two_prompts(), answers, thresholds(pass_rate=0.5, p95_latency="1s"))
    assert verdict.error_rate == 0.5
    assert verdict.p95_latency_s == 0.85
    checks = {c.name: c for c in verdict.checks}
    assert checks["error rate"].actual == "50% (1 of 2 requests)"
    assert not checks["error rate"].ok
    assert checks["p95 latency"].actual == "850ms"
    assert checks["p95 latency"].ok
    assert not verdict.passed
    assert judge(two_prompts(), answers, thresholds(pass_rate=0.5, max_error_rate=0.5)).passed


def test_p95_latency_breach_and_no_successful_request() -> None:
    verdict = judge(two_prompts(), [ok("Paris", latency_s=3.5), ok("4", "math")], thresholds(p95_latency="2s"))
    assert not verdict.passed
    assert verdict.checks[-1] == Check("p95 latency", "≤ 2s", "3.5s", False)
    all_failed = judge(
        two_prompts(), [failed(), failed("math")], thresholds(pass_rate=0, max_error_rate=1, p95_latency="2s")
    )
    assert all_failed.p95_latency_s is None
    assert all_failed.checks[-1].actual == "no successful requests"
    assert not all_failed.passed


def test_missing_answer_is_a_failed_request() -> None:
    verdict = judge(two_prompts(), [ok("Paris")], thresholds(pass_rate=0.5, max_error_rate=0.5))
    assert verdict.results[1].failures == ("no answer was recorded (the request was never made)",)
    assert verdict.error_rate == 0.5


def test_answers_must_match_prompts() -> None:
    with pytest.raises(ValueError, match="not one of the validation prompts"):
        judge(two_prompts(), [ok("x", "other")], thresholds())
    with pytest.raises(ValueError, match="two answers"):
        judge(two_prompts(), [ok("Paris"), ok("Paris")], thresholds())


def test_no_prompts_passes_without_checks() -> None:
    verdict = judge([], [], thresholds(p95_latency="1s"))
    assert verdict.passed
    assert verdict.checks == ()
    assert verdict.results == ()


# --- live traffic -----------------------------------------------------------------------------------------


def samples(colour: str, n: int, *, status: int = 200, latency_s: float = 0.2) -> list[LiveSample]:
    return [LiveSample(colour=colour, status=status, latency_s=latency_s, ts=1000.0 + i) for i in range(n)]


ROLLBACK = RollbackOn.model_validate({"max_error_rate": 0.01, "p95_latency": "2s"})


def judge_live(
    traffic: Sequence[LiveSample],
    colour: str,
    rollback: RollbackOn,
    *,
    baseline: Sequence[LiveSample] = (),
    max_relative_p95: float | None = None,
) -> LiveVerdict:
    base = traffic_of(baseline, baseline[0].colour) if baseline else None
    return judge_traffic(traffic_of(traffic, colour), rollback, baseline=base, max_relative_p95=max_relative_p95)


def texts(verdict: LiveVerdict) -> tuple[str, ...]:
    """The breaches as the report words them (the verdict itself holds numbers)."""
    return tuple(breach_text(b) for b in verdict.breaches)


def test_live_ok_and_other_colour_ignored() -> None:
    traffic = samples("green", 57) + samples("green", 3, status=400) + samples("blue", 50, status=502)
    verdict = judge_live(traffic, "green", ROLLBACK)
    assert (verdict.requests, verdict.errors, verdict.error_rate) == (60, 0, 0.0)
    assert not verdict.breached
    assert not verdict.inconclusive
    assert texts(verdict) == ()
    assert verdict.p95_latency_s == 0.2


def test_live_error_rate_breach() -> None:
    traffic = samples("green", 57) + samples("green", 2, status=503) + samples("green", 1, status=0)
    verdict = judge_live(traffic, "green", ROLLBACK)
    assert verdict.outcome == "breached"
    assert verdict.errors == 3
    assert texts(verdict) == ("error rate 5% > 1% (3 of 60 requests)",)


def test_live_client_errors_are_not_errors() -> None:
    traffic = samples("green", 50) + samples("green", 10, status=499) + samples("green", 10, status=400)
    assert not judge_live(traffic, "green", ROLLBACK).breached


@pytest.mark.parametrize("status", [401, 403, 404, 429])
def test_live_client_errors_every_client_sees_count_by_default(status: int) -> None:
    # An API-key drift (401/403), a served-name drift (404) or refused load (429) fails every client.
    traffic = samples("green", 50) + samples("green", 10, status=status)
    verdict = judge_live(traffic, "green", ROLLBACK)
    assert verdict.errors == 10 and verdict.breached
    assert texts(verdict) == ("error rate 16.67% > 1% (10 of 60 requests)",)


def test_live_counted_client_errors_are_configurable() -> None:
    traffic = samples("green", 50) + samples("green", 10, status=404) + samples("green", 5, status=418)
    assert traffic_of(traffic, "green", counted=()).errors == 0, "error_statuses: [] counts only 5xx"
    assert traffic_of(traffic, "green", counted={418}).errors == 5


def test_live_latency_breach() -> None:
    traffic = samples("green", 50) + samples("green", 10, latency_s=2.5)
    verdict = judge_live(traffic, "green", ROLLBACK)
    assert verdict.outcome == "breached"
    assert texts(verdict) == ("p95 latency 2.5s > 2s (60 requests)",)


def test_live_relative_to_baseline() -> None:
    rollback = RollbackOn.model_validate({})
    green = samples("green", 30, latency_s=0.9)
    baseline = samples("blue", 30, latency_s=0.5)
    verdict = judge_live(green, "green", rollback, baseline=baseline, max_relative_p95=1.5)
    assert verdict.outcome == "breached"
    assert texts(verdict) == ("p95 latency 900ms > 1.5 × baseline p95 500ms = 750ms",)
    assert not judge_live(green, "green", rollback, baseline=baseline, max_relative_p95=2).breached
    # Too small a baseline says nothing.
    assert not judge_live(green, "green", rollback, baseline=baseline[:5], max_relative_p95=1.5).breached


def test_live_inconclusive_with_few_requests() -> None:
    traffic = samples("green", 5) + samples("green", 5, status=500, latency_s=9)
    verdict = judge_live(traffic, "green", ROLLBACK)
    assert verdict.inconclusive
    assert not verdict.breached
    assert texts(verdict) == ()
    assert verdict.requests == 10
    assert judge_live([], "green", ROLLBACK).inconclusive


def test_live_zero_tolerance_breaks_even_with_few_requests() -> None:
    rollback = RollbackOn.model_validate({"max_error_rate": 0})
    verdict = judge_live(samples("green", 4) + samples("green", 1, status=500), "green", rollback)
    assert verdict.outcome == "breached"
    assert not verdict.inconclusive
    assert texts(verdict) == ("1 failed of 5 requests, and max_error_rate is 0%",)
    assert not judge_live(samples("green", 4), "green", rollback).breached


# --- access log -------------------------------------------------------------------------------------------


def test_parse_access_log() -> None:
    lines = [
        '{"ts":"1700000000.123","colour":"green","status":"200","request_time":"1.500",'
        '"upstream_response_time":"1.498","upstream_addr":"127.0.0.1:8002","method":"POST",'
        '"uri":"/v1/chat/completions","request_id":"abc","bytes":512}',
        # Refused connection: no upstream time, the request time counts.
        '{"ts":"1700000001.000","colour":"blue","status":"502","request_time":"0.004",'
        '"upstream_response_time":"-","bytes":150}',
        # Retried on another attempt: the last attempt's time is the answer's.
        '{"ts":"1700000002.5","colour":"green","status":200,"request_time":"0.300",'
        '"upstream_response_time":"0.010, 0.250"}',
        '{"ts":"1700000003.0","colour":"green","status":"200","request_time":"0.3","upstream_response_time":""}',
        # The router's own 404: no colour served it.
        '{"ts":"1700000004.0","colour":"","status":"404","request_time":"0.000","upstream_response_time":""}',
        "not json at all",
        "",
        "[1, 2, 3]",
        '{"ts":"1700000005.0","colour":"green","status":"abc","request_time":"0.1"}',
        '{"ts":"1700000005.0","colour":"green","status":"200"}',
        '{"colour":"green","status":"200","request_time":"0.1"}',
        '{"ts":"1700000006.0","colour":"green","status":"200","request_time":"0.1"',
    ]
    assert parse_access_log(lines) == [
        LiveSample(colour="green", status=200, latency_s=1.498, ts=1700000000.123),
        LiveSample(colour="blue", status=502, latency_s=0.004, ts=1700000001.0),
        LiveSample(colour="green", status=200, latency_s=0.25, ts=1700000002.5),
        LiveSample(colour="green", status=200, latency_s=0.3, ts=1700000003.0),
    ]


def test_parsed_log_feeds_the_live_verdict() -> None:
    line = '{{"ts":"{ts}","colour":"green","status":"{status}","request_time":"0.1","upstream_response_time":"0.1"}}'
    lines = [line.format(ts=1000 + i, status=500 if i < 3 else 200) for i in range(60)]
    verdict = judge_live(parse_access_log(lines), "green", ROLLBACK)
    assert texts(verdict) == ("error rate 5% > 1% (3 of 60 requests)",)
