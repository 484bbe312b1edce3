"""Markdown of an LLM evaluation: figures per colour, the gates against live, and each eval set's results.

Prompt names, failures and answers come from files and models: every one is escaped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bgdeploy.analysis.prometheus import QueryLook
from bgdeploy.plan.evaluation import ColourScore, DatasetResult, LoadFigures
from bgdeploy.plan.result import ModelPoint
from bgdeploy.plan.verdict import Check, Verdict, format_rate, format_seconds

_MARK = {True: "✅", False: "❌"}


def _seconds(value: float | None) -> str:
    return format_seconds(value) if value is not None else "-"


def colour_table(green: Verdict, live: Verdict | None, green_name: str, live_name: str) -> list[str]:
    rows = [
        "| colour | pass rate | errors | TTFT p50 | TTFT p95 | ITL p95 | tokens/s | latency p95 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, verdict in ((green_name, green), (live_name, live)):
        if verdict is None:
            continue
        rate = f"{verdict.tokens_per_s:.1f}" if verdict.tokens_per_s is not None else "-"
        rows.append(
            f"| {name} | {format_rate(verdict.pass_rate)} | {format_rate(verdict.error_rate)} | "
            f"{_seconds(verdict.ttft_p50_s)} | {_seconds(verdict.ttft_p95_s)} | {_seconds(verdict.itl_p95_s)} | "
            f"{rate} | {_seconds(verdict.p95_latency_s)} |"
        )
    return rows


def _mark(check: Check) -> str:
    if check.judged:
        return _MARK[check.ok]
    return "⏭️ skipped" if check.actual.startswith("skipped") else "⚪ not judged"


def relative_table(checks: list[Check]) -> list[str]:
    if not checks:
        return []
    rows = ["| gate against live | limit | measured | |", "| --- | --- | --- | --- |"]
    rows += [f"| {c.name} | {c.limit} | {c.actual} | {_mark(c)} |" for c in checks]
    return rows


def _score(score: ColourScore | None) -> str:
    if score is None:
        return "-"
    return f"{format_rate(score.pass_rate)} ({score.passed}/{score.asked})"


def dataset_tables(
    datasets: list[DatasetResult], green_name: str, live_name: str, escape: Callable[[str, int], str]
) -> list[str]:
    if not datasets:
        return []
    rows = [
        f"| eval set | asked | {green_name} pass rate | {live_name} pass rate |",
        "| --- | --- | --- | --- |",
    ]
    for d in datasets:
        asked = f"{d.asked} of {d.total}" + (f" (sample, seed {d.seed})" if d.sample is not None else "")
        rows.append(f"| {escape(d.path, 80)} | {asked} | {_score(d.green)} | {_score(d.live)} |")
    for d in datasets:
        for colour, score in ((green_name, d.green), (live_name, d.live)):
            if score is None or not score.failing:
                continue
            more = score.failing_total - len(score.failing)
            rows += [
                "",
                f"Failing on {colour} in {escape(d.path, 80)}"
                + (f" (first {len(score.failing)} of {score.failing_total})" if more else "")
                + ":",
                "",
                "| prompt | why | answer |",
                "| --- | --- | --- |",
            ]
            rows += [
                f"| {escape(f.name, 60)} | {escape('; '.join(f.failures), 160)} | {escape(f.answer, 120)} |"
                for f in score.failing
            ]
    return rows


def inline_only(verdict: Verdict, datasets: list[DatasetResult]) -> Verdict:
    """The verdict without the eval sets' prompts (named `PATH:...`): those are summed up per dataset instead."""
    if not datasets:
        return verdict
    prefixes = tuple(d.path + ":" for d in datasets)
    return replace(verdict, results=tuple(r for r in verdict.results if not r.name.startswith(prefixes)))


def load_table(figures: list[LoadFigures]) -> list[str]:
    if not figures:
        return []
    rows = [
        "Load probe (the same requests to each colour at once, at the same concurrency):",
        "",
        "| colour | requests | errors | requests/s | tokens/s | TTFT p95 | latency p95 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows += [
        f"| {f.colour} | {f.requests} | {f.errors} | {f.requests_per_s:.1f} | {f.tokens_per_s:.1f} | "
        f"{_seconds(f.ttft_p95_s)} | {_seconds(f.latency_p95_s)} |"
        for f in figures
    ]
    return rows


def model_charts(points: list[ModelPoint]) -> list[str]:
    """TTFT p95 and error rate per colour over the bake or canary, as mermaid xycharts (GitHub renders them)."""
    if not points:
        return []
    colours = list(dict.fromkeys(p.colour for p in points))
    times = sorted({p.t_s for p in points})
    by_key = {(p.colour, p.t_s): p for p in points}
    labels = ", ".join(f'"{t:.0f}s"' for t in times)
    rows = ["#### Model metrics over the watch", ""]
    summary = [
        "| colour | requests | TTFT p95 | ITL p95 | waiting (peak) | KV cache |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for colour in colours:
        last = [p for p in points if p.colour == colour][-1]
        queue = f"{last.queue_peak:g}" if last.queue_peak is not None else "-"
        kv = format_rate(last.kv_cache) if last.kv_cache is not None else "-"
        latency = f"{_seconds(last.ttft_p95_s)} | {_seconds(last.itl_p95_s)}"
        summary.append(f"| {colour} | {last.requests} | {latency} | {queue} | {kv} |")
    rows += [*summary, ""]

    def ttft_ms(p: ModelPoint) -> float:
        return (p.ttft_p95_s or 0.0) * 1000

    def error_percent(p: ModelPoint) -> float:
        return (p.error_rate or 0.0) * 100

    charts: list[tuple[str, str, Callable[[ModelPoint], float]]] = [
        ("TTFT p95 (ms)", "ms", ttft_ms),
        ("Error rate (%)", "percent", error_percent),
    ]
    for title, axis, value in charts:
        series = [[round(value(by_key[(c, t)]), 1) if (c, t) in by_key else 0 for t in times] for c in colours]
        top = max([1.0, *(v for line in series for v in line)])
        rows += [
            "```mermaid",
            "xychart-beta",
            f'    title "{title}: {" then ".join(colours)}"',
            f"    x-axis [{labels}]",
            f'    y-axis "{axis}" 0 --> {top * 1.1:.0f}',
            *[f"    line [{', '.join(str(v) for v in line)}]" for line in series],
            "```",
            "",
        ]
    return rows


def prometheus_table(looks: list[QueryLook], new: str, old: str) -> list[str]:
    """analysis.prometheus: each query's last look, and how many looks broke its limit."""
    if not looks:
        return []
    last: dict[str, QueryLook] = {}
    breaking: dict[str, int] = {}
    for look in looks:
        last[look.query] = look
        breaking[look.query] = breaking.get(look.query, 0) + int(look.breaking)
    rows = [
        "#### Prometheus",
        "",
        f"| query | limit | {new} | {old} | looks over the limit | |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, look in last.items():
        mark = "❌ breached" if look.breached else ("⚪ no data" if look.new is None else "✅")
        mine = f"{look.new:g}" if look.new is not None else "-"
        theirs = f"{look.old:g}" if look.old is not None else "-"
        total = sum(1 for x in looks if x.query == name)
        rows.append(f"| {name} | {look.limit} | {mine} | {theirs} | {breaking[name]} of {total} | {mark} |")
    return [*rows, ""]
