"""Judging green against the live model: the `_vs_live` gates and the per-dataset results. Pure.

Both colours are asked the same prompts at the same time, so a ratio of their figures cancels what the
host was doing meanwhile. A gate with nothing live is skipped, a gate without a figure to compare is "not
judged": both are listed in the report with the reason, never silently dropped, and neither blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bgdeploy.plan.structured import canonical_calls
from bgdeploy.plan.verdict import Answer, Check, PromptResult, Verdict, format_rate, format_seconds, percentile
from bgdeploy.spec.models import Prompt, Thresholds

_EPSILON = 1e-9


def normalise(text: str) -> str:
    """Answers agree when equal after collapsing whitespace and ignoring case."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Agreement:
    compared: int  # temperature-0 prompts both colours answered
    agreed: int

    @property
    def rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


def agreement(prompts: Sequence[Prompt], green: Verdict, live: Verdict) -> Agreement:
    """How many temperature-0 prompts got the same answer (text and tool calls) from both colours."""
    deterministic = {p.name for p in prompts if p.temperature == 0}
    live_by_name = {r.name: r for r in live.results}
    compared = agreed = 0
    for mine in green.results:
        theirs = live_by_name.get(mine.name)
        if mine.name not in deterministic or theirs is None:
            continue
        a, b = mine.answer, theirs.answer
        if a.text is None or b.text is None:
            continue
        compared += 1
        if normalise(a.text) == normalise(b.text) and canonical_calls(a.tool_calls) == canonical_calls(b.tool_calls):
            agreed += 1
    return Agreement(compared, agreed)


def _ratio_check(name: str, limit: float, green: float | None, live: float | None, what: str) -> Check:
    wanted = f"≤ {limit:g} × live"
    if green is None or live is None:
        side = "green" if green is None else "live"
        return Check(name, wanted, f"not judged: no {what} measured on {side}", True, judged=False)
    if live <= 0:
        return Check(name, wanted, f"not judged: live {what} is 0", True, judged=False)
    ratio = green / live
    actual = f"{ratio:.2f}× ({format_seconds(green)} vs {format_seconds(live)})"
    return Check(name, wanted, actual, ratio <= limit + _EPSILON)


def relative_gates(
    thresholds: Thresholds,
    prompts: Sequence[Prompt],
    green: Verdict,
    live: Verdict | None,
    *,
    no_live_reason: str = "nothing is live",
) -> tuple[Check, ...]:
    """Every `_vs_live` gate the spec sets, judged (or skipped, or not judged, with the reason)."""
    gates: list[tuple[str, float | None, str]] = [
        ("pass rate vs live", thresholds.min_pass_rate_vs_live, "min"),
        ("TTFT p95 vs live", thresholds.max_ttft_p95_vs_live, "ttft"),
        ("ITL p95 vs live", thresholds.max_itl_p95_vs_live, "itl"),
        ("latency p95 vs live", thresholds.max_latency_p95_vs_live, "latency"),
        ("agreement with live", thresholds.min_agreement_with_live, "agreement"),
    ]
    checks: list[Check] = []
    for name, limit, kind in gates:
        if limit is None:
            continue
        if live is None:
            wanted = _limit_text(kind, limit)
            checks.append(Check(name, wanted, f"skipped: {no_live_reason}", True, judged=False))
            continue
        if kind == "min":
            checks.append(_pass_rate_check(name, limit, green, live))
        elif kind == "ttft":
            checks.append(_ratio_check(name, limit, green.ttft_p95_s, live.ttft_p95_s, "TTFT"))
        elif kind == "itl":
            checks.append(_ratio_check(name, limit, green.itl_p95_s, live.itl_p95_s, "inter-token latency"))
        elif kind == "latency":
            checks.append(_ratio_check(name, limit, green.p95_latency_s, live.p95_latency_s, "latency"))
        else:
            checks.append(_agreement_check(name, limit, agreement(prompts, green, live)))
    return tuple(checks)


def _limit_text(kind: str, limit: float) -> str:
    if kind == "min":
        return f"≥ live {'+' if limit >= 0 else '−'}{format_rate(abs(limit))}"
    if kind == "agreement":
        return f"≥ {format_rate(limit)}"
    return f"≤ {limit:g} × live"


def _pass_rate_check(name: str, limit: float, green: Verdict, live: Verdict) -> Check:
    wanted = _limit_text("min", limit)
    if not green.results:
        return Check(name, wanted, "not judged: no prompts", True, judged=False)
    difference = green.pass_rate - live.pass_rate
    sign = "+" if difference >= 0 else "−"
    actual = f"{sign}{format_rate(abs(difference))} ({format_rate(green.pass_rate)} vs {format_rate(live.pass_rate)})"
    return Check(name, wanted, actual, difference + _EPSILON >= limit)


def _agreement_check(name: str, limit: float, found: Agreement) -> Check:
    wanted = _limit_text("agreement", limit)
    rate = found.rate
    if rate is None:
        return Check(name, wanted, "not judged: no temperature-0 prompt answered by both", True, judged=False)
    actual = f"{format_rate(rate)} ({found.agreed} of {found.compared} prompts)"
    return Check(name, wanted, actual, rate + _EPSILON >= limit)


@dataclass(frozen=True)
class FailedPrompt:
    name: str
    failures: tuple[str, ...]
    answer: str  # the answer, or the request's error


@dataclass(frozen=True)
class ColourScore:
    asked: int
    passed: int
    pass_rate: float
    failing: tuple[FailedPrompt, ...]  # the first few, in file order
    failing_total: int


@dataclass(frozen=True)
class DatasetResult:
    """One eval set's results per colour (live is None when nothing live was asked)."""

    path: str
    total: int  # prompts in the file
    asked: int  # prompts sampled and asked
    sample: int | None
    seed: int
    green: ColourScore
    live: ColourScore | None


def _score(results: Sequence[PromptResult], shown: int) -> ColourScore:
    failing = [r for r in results if not r.passed]
    passed = len(results) - len(failing)
    listed = tuple(
        FailedPrompt(r.name, r.failures, r.answer.text if r.answer.text is not None else (r.answer.error or ""))
        for r in failing[:shown]
    )
    return ColourScore(len(results), passed, passed / len(results) if results else 1.0, listed, len(failing))


def dataset_result(
    path: str,
    total: int,
    names: Sequence[str],
    sample: int | None,
    seed: int,
    green: Verdict,
    live: Verdict | None,
    shown: int,
) -> DatasetResult:
    """The results of the prompts named `names` (one dataset's), taken from each colour's verdict."""
    wanted = set(names)
    mine = [r for r in green.results if r.name in wanted]
    theirs = [r for r in live.results if r.name in wanted] if live is not None else None
    return DatasetResult(
        path=path,
        total=total,
        asked=len(mine),
        sample=sample,
        seed=seed,
        green=_score(mine, shown),
        live=_score(theirs, shown) if theirs is not None else None,
    )


@dataclass(frozen=True)
class LoadFigures:
    """One colour under the load probe: the same requests, at the same concurrency, as the other colour."""

    colour: str
    requests: int
    errors: int
    seconds: float
    requests_per_s: float
    tokens_per_s: float  # output tokens of all answers over the probe's wall time
    ttft_p95_s: float | None
    latency_p95_s: float | None


def load_figures(colour: str, answers: Sequence[Answer], seconds: float) -> LoadFigures:
    ok = [a for a in answers if a.text is not None]
    tokens = sum(a.output_tokens or 0 for a in ok)
    wall = max(seconds, 1e-9)
    return LoadFigures(
        colour=colour,
        requests=len(answers),
        errors=len(answers) - len(ok),
        seconds=seconds,
        requests_per_s=len(ok) / wall,
        tokens_per_s=tokens / wall,
        ttft_p95_s=percentile([a.ttft_s for a in ok if a.ttft_s is not None], 95),
        latency_p95_s=percentile([a.latency_s for a in ok], 95),
    )
