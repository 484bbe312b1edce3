"""Verdicts on validation: answers against the spec's expectations and thresholds. Every failure is a
sentence a person can act on. (Live traffic is judged in `bgdeploy.analysis.verdict`.)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from bgdeploy.plan.structured import ToolCall, structured_failures
from bgdeploy.spec.models import Prompt, Thresholds

# Ratios computed from counts (9/10) and limits written as decimals (0.9) may differ in the last bit.
_EPSILON = 1e-9
_QUOTE_LIMIT = 80


@dataclass(frozen=True)
class Answer:
    """What one validation request returned; text is None when the request itself failed.

    Streamed answers also carry time to first token, mean inter-token latency, output tokens (from the usage
    chunk when the server sends one, else the chunks counted) and tokens per second of the whole request.
    """

    prompt: str
    text: str | None
    latency_s: float
    status: int | None
    error: str | None
    ttft_s: float | None = None
    itl_s: float | None = None
    output_tokens: int | None = None
    tokens_per_s: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class PromptResult:
    name: str
    answer: Answer
    passed: bool
    failures: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    """One threshold: its name, the limit and the measured figure as people read them."""

    name: str
    limit: str
    actual: str
    ok: bool
    judged: bool = True  # False: skipped (nothing live) or not judged (no figure to judge); `actual` says why


@dataclass(frozen=True)
class Verdict:
    results: tuple[PromptResult, ...]
    checks: tuple[Check, ...]
    passed: bool
    pass_rate: float
    error_rate: float
    p95_latency_s: float | None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    itl_p95_s: float | None = None
    tokens_per_s: float | None = None  # the median of the prompts' tokens/s


def format_seconds(seconds: float) -> str:
    """850ms, 1.2s, 2.31s, 2s."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:.2f}".rstrip("0").rstrip(".") + "s"


def format_rate(rate: float) -> str:
    """100%, 50%, 33.33%, 0.05%; a rate above zero never reads as 0%."""
    percent = rate * 100
    text = f"{percent:.2f}".rstrip("0").rstrip(".")
    if text == "0" and percent > 0:
        return "<0.01%"
    return text + "%"


def _quote(text: str) -> str:
    # json.dumps gives a double-quoted form with newlines and quotes escaped, so a reason stays on one line.
    if len(text) > _QUOTE_LIMIT:
        text = text[:_QUOTE_LIMIT] + "…"
    return json.dumps(text, ensure_ascii=False)


def _latency_failure(latency: float, limit: float) -> str:
    took, allowed = format_seconds(latency), format_seconds(limit)
    if took == allowed:
        # 2.001s against 2s would otherwise read "took 2s, more than 2s".
        took = f"{latency:.3f}s"
    return f"took {took}, more than max_latency {allowed}"


def judge_answer(prompt: Prompt, answer: Answer) -> PromptResult:
    """Apply every rule of the prompt's `expect` to the answer; all failures are listed, not just the first."""
    expect = prompt.expect
    if answer.text is None:
        reason = answer.error or (f"HTTP {answer.status}" if answer.status is not None else "the request failed")
        return PromptResult(prompt.name, answer, False, (reason,))

    text = answer.text

    def fold(value: str) -> str:
        return value.casefold() if expect.ignore_case else value

    haystack = fold(text)
    failures: list[str] = []

    failures += [f"missing {_quote(needle)}" for needle in expect.contains if fold(needle) not in haystack]
    if expect.any_of and not any(fold(needle) in haystack for needle in expect.any_of):
        failures.append(f"none of {', '.join(_quote(needle) for needle in expect.any_of)} found")
    failures += [f"contains forbidden {_quote(needle)}" for needle in expect.not_contains if fold(needle) in haystack]
    if expect.regex is not None:
        flags = re.IGNORECASE if expect.ignore_case else 0
        try:
            if re.search(expect.regex, text, flags) is None:
                failures.append(f"regex /{expect.regex}/ did not match")
        except re.error as exc:
            failures.append(f"regex /{expect.regex}/ is not a valid regular expression ({exc})")
    if expect.equals is not None and fold(text.strip()) != fold(expect.equals.strip()):
        failures.append(f"expected exactly {_quote(expect.equals.strip())}, got {_quote(text.strip())}")
    if expect.json_valid:
        # Strict on purpose: a model that wraps JSON in a ```json fence has not answered with JSON.
        try:
            json.loads(text.strip())
        except json.JSONDecodeError as exc:
            failures.append(f"not valid JSON ({exc.msg} at char {exc.pos})")
    if expect.max_latency is not None and answer.latency_s > expect.max_latency:
        failures.append(_latency_failure(answer.latency_s, expect.max_latency))
    failures += structured_failures(expect, text, answer.tool_calls)

    return PromptResult(prompt.name, answer, not failures, tuple(failures))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q from 0 to 100): always one of the values; None when there are none."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not between 0 and 100")
    if not values:
        return None
    ordered = sorted(values)
    # Exact arithmetic: 95 / 100 * 20 in floats is 19.000000000000004, whose ceiling would be the wrong rank.
    rank = math.ceil(Fraction(str(q)) * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


def judge(prompts: Sequence[Prompt], answers: Sequence[Answer], thresholds: Thresholds) -> Verdict:
    """Judge every prompt's answer and the thresholds over all of them."""
    by_name: dict[str, Answer] = {}
    known = {prompt.name for prompt in prompts}
    for answer in answers:
        if answer.prompt not in known:
            raise ValueError(f"answer for {answer.prompt!r}, which is not one of the validation prompts")
        if answer.prompt in by_name:
            raise ValueError(f"two answers for prompt {answer.prompt!r}")
        by_name[answer.prompt] = answer

    results = tuple(
        judge_answer(
            prompt,
            by_name.get(prompt.name)
            or Answer(prompt.name, None, 0.0, None, "no answer was recorded (the request was never made)"),
        )
        for prompt in prompts
    )
    total = len(results)
    if total == 0:
        # Nothing to ask: readiness (health) alone decides.
        return Verdict((), (), True, 1.0, 0.0, None)

    passed = sum(1 for r in results if r.passed)
    failed_requests = sum(1 for r in results if r.answer.text is None)
    pass_rate = passed / total
    error_rate = failed_requests / total
    p95 = percentile([r.answer.latency_s for r in results if r.answer.text is not None], 95)

    checks = [
        Check(
            "pass rate",
            f"≥ {format_rate(thresholds.pass_rate)}",
            f"{format_rate(pass_rate)} ({passed} of {total} prompts)",
            pass_rate + _EPSILON >= thresholds.pass_rate,
        ),
        Check(
            "error rate",
            f"≤ {format_rate(thresholds.max_error_rate)}",
            f"{format_rate(error_rate)} ({failed_requests} of {total} requests)",
            error_rate <= thresholds.max_error_rate + _EPSILON,
        ),
    ]
    if thresholds.p95_latency is not None:
        limit = f"≤ {format_seconds(thresholds.p95_latency)}"
        if p95 is None:
            # A latency limit cannot be shown to hold when no request succeeded.
            checks.append(Check("p95 latency", limit, "no successful requests", False))
        else:
            checks.append(Check("p95 latency", limit, format_seconds(p95), p95 <= thresholds.p95_latency))

    answered = [r.answer for r in results if r.answer.text is not None]
    streamed = stream_figures(answered)
    checks += stream_checks(streamed, thresholds, len(answered))
    return Verdict(
        results=results,
        checks=tuple(checks),
        passed=all(check.ok for check in checks),
        pass_rate=pass_rate,
        error_rate=error_rate,
        p95_latency_s=p95,
        ttft_p50_s=streamed.ttft_p50_s,
        ttft_p95_s=streamed.ttft_p95_s,
        itl_p95_s=streamed.itl_p95_s,
        tokens_per_s=streamed.tokens_per_s,
    )


@dataclass(frozen=True)
class StreamFigures:
    """Streamed-answer figures over the prompts that were answered (None where no answer carried them)."""

    ttft_p50_s: float | None
    ttft_p95_s: float | None
    itl_p95_s: float | None
    tokens_per_s: float | None
    measured: int  # answers with a TTFT


def stream_figures(answers: Sequence[Answer]) -> StreamFigures:
    ttfts = [a.ttft_s for a in answers if a.ttft_s is not None]
    itls = [a.itl_s for a in answers if a.itl_s is not None]
    rates = [a.tokens_per_s for a in answers if a.tokens_per_s is not None]
    return StreamFigures(
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p95_s=percentile(ttfts, 95),
        itl_p95_s=percentile(itls, 95),
        tokens_per_s=percentile(rates, 50),
        measured=len(ttfts),
    )


def stream_checks(figures: StreamFigures, thresholds: Thresholds, answered: int) -> list[Check]:
    """The absolute TTFT and ITL limits. A limit with nothing to measure (no streamed answer; ITL needs two tokens)
    fails when prompts were answered, since it cannot be shown to hold."""
    checks: list[Check] = []
    for name, limit, value in (
        ("TTFT p95", thresholds.ttft_p95, figures.ttft_p95_s),
        ("ITL p95", thresholds.itl_p95, figures.itl_p95_s),
    ):
        if limit is None:
            continue
        wanted = f"≤ {format_seconds(limit)}"
        if value is None:
            why = "no successful requests" if answered == 0 else "not measured (no streamed answer carried it)"
            checks.append(Check(name, wanted, why, False))
        else:
            checks.append(Check(name, wanted, format_seconds(value), value <= limit))
    return checks
