"""The markdown report of a command: outcome first, then the plan, validation, live checks and timings.

Model output and container logs are untrusted: they are escaped so they cannot break the table, inject
HTML, mention people or forge a hidden marker.
"""

from __future__ import annotations

from bgdeploy.analysis.verdict import LiveOutcome, LiveVerdict
from bgdeploy.plan.capture import describe as replay_line
from bgdeploy.plan.evaluation_report import (
    colour_table,
    dataset_tables,
    inline_only,
    load_table,
    model_charts,
    prometheus_table,
    relative_table,
)
from bgdeploy.plan.result import Outcome, Result
from bgdeploy.plan.verdict import PromptResult, Verdict, format_rate, format_seconds
from bgdeploy.report.live import breach_text, error_statuses_text
from bgdeploy.untrusted.markdown import code_line, code_span, escape_block, escape_inline

# The markdown choke point: every untrusted value in a report goes through these two.
__all__ = ["escape_block", "escape_inline", "headline", "render"]

ANSWER_CHARS = 120
LOG_LINES = 20

_OUTCOME: dict[Outcome, tuple[str, str]] = {
    "deployed": ("✅", "Deployed"),
    "unchanged": ("⏸️", "Unchanged"),
    "failed": ("❌", "Deploy failed"),
    "rolled-back": ("↩️", "Rolled back"),
    "planned": ("📝", "Planned"),
    "previewed": ("🔍", "Previewed"),
    "paused": ("⏸️", "Canary paused"),
    "aborted": ("↩️", "Canary aborted"),
    "invalid": ("⚠️", "Invalid spec"),
    "removed": ("🗑️", "Removed"),
}


def _verdict_rows(green: Verdict, blue: Verdict | None, green_name: str, blue_name: str) -> list[str]:
    header = f"| prompt | {green_name} | latency | answer |"
    rule = "| --- | --- | --- | --- |"
    if blue is not None:
        header += f" {blue_name} | latency | answer |"
        rule += " --- | --- | --- |"
    rows = [header, rule]
    blue_by_name = {r.name: r for r in blue.results} if blue else {}
    for res in green.results:
        row = "| " + " | ".join([escape_inline(res.name, 40), *_cells(res)]) + " |"
        if blue is not None:
            other = blue_by_name.get(res.name)
            row += " " + " | ".join(_cells(other) if other else ["-", "-", "-"]) + " |"
        rows.append(row)
    return rows


def _cells(res: PromptResult) -> list[str]:
    mark = "✅ pass" if res.passed else "❌ " + escape_inline("; ".join(res.failures), 80)
    answer = res.answer.text if res.answer.text is not None else (res.answer.error or "")
    return [mark, format_seconds(res.answer.latency_s), escape_inline(answer)]


def _checks(verdict: Verdict) -> list[str]:
    if not verdict.checks:
        return []
    rows = ["| threshold | limit | measured | |", "| --- | --- | --- | --- |"]
    rows += [f"| {c.name} | {c.limit} | {c.actual} | {'✅' if c.ok else '❌'} |" for c in verdict.checks]
    return rows


def _live(verdict: LiveVerdict | None) -> list[str]:
    if verdict is None:
        return ["-", "-", "-"]
    p95 = format_seconds(verdict.p95_latency_s) if verdict.p95_latency_s is not None else "-"
    return [str(verdict.requests), format_rate(verdict.error_rate) + _which(verdict), p95]


def _which(verdict: LiveVerdict) -> str:
    """` (401×30)`: which failures clients saw, 4xx drifts included (empty when none failed)."""
    return f" ({error_statuses_text(verdict.error_statuses)})" if verdict.error_statuses else ""


def _canary_rows(result: Result) -> list[str]:
    new = result.target.colour if result.target else "new"
    old = result.previous_colour or "old"
    mark: dict[LiveOutcome, str] = {"passed": "✅ passed", "breached": "❌ breached", "inconclusive": "⏸️ inconclusive"}
    rows = [
        "#### Canary",
        "",
        f"| step | weight | held | {new} requests | {new} errors | {new} p95 | {old} requests | {old} errors "
        f"| {old} p95 | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rec in result.canary:
        cells = [
            str(rec.step),
            f"{rec.weight}%",
            format_seconds(rec.seconds),
            *_live(rec.new),
            *_live(rec.old),
            mark[rec.verdict],
        ]
        rows.append("| " + " | ".join(cells) + " |")
        rows += [f"| | | | {escape_inline(breach_text(b), 300)} | | | | | | |" for b in rec.new.breaches]
    # Traffic share over time: the observed share of the new colour at each step.
    shares = [
        round(100 * rec.new.requests / max(1, rec.new.requests + (rec.old.requests if rec.old else 0)))
        for rec in result.canary
    ]
    labels = ", ".join(f'"{rec.step}"' for rec in result.canary)
    rows += [
        "",
        "```mermaid",
        "xychart-beta",
        f'    title "Share of requests served by {new} (%)"',
        f"    x-axis [{labels}]",
        '    y-axis "percent" 0 --> 100',
        f"    bar [{', '.join(str(rec.weight) for rec in result.canary)}]",
        f"    line [{', '.join(str(s) for s in shares)}]",
        "```",
        "",
        "Bars: the weight asked of the router; line: the share of requests the new colour actually served.",
        "",
    ]
    return rows


def headline(result: Result, *, markdown: bool = True) -> str:
    """One line, outcome first: markdown (untrusted text escaped), or plain text for a terminal."""
    inline = escape_inline if markdown else _plain_inline

    def bold(text: str) -> str:
        return f"**{text}**" if markdown else text

    emoji, label = _OUTCOME.get(result.outcome, ("", result.outcome))
    if result.outcome == "failed" and result.command != "deploy":
        label = f"{result.command.capitalize()} failed"
    outcome = f"{emoji} {bold(label)}".strip()
    if result.command == "remove":
        name = inline(result.name, 60)
        if result.outcome == "removed":
            return f"{outcome}: {name} is gone from the host (router, colours, network, logs)"
        if result.outcome == "unchanged":
            return f"{outcome}: nothing of {name} was on the host"
        return f"{outcome}: {inline(result.failure or 'unknown failure', 300)}"
    target = result.target
    before = result.live_before
    if result.outcome == "deployed" and target is not None:
        frm = f" (was {before.colour}: {inline(before.model, 80)})" if before else ""
        return f"{outcome}: {target.colour} now serves {inline(target.model, 80)}{frm}"
    if result.outcome == "failed":
        live = f"{result.active_colour} still serves" if result.active_colour else "nothing was live before"
        if result.active_colour and target is not None and result.active_colour == target.colour:
            # The failure came after the switch and nothing routed back (a lost connection): say what serves.
            live = f"{result.active_colour} serves {inline(target.model, 80)}"
        return f"{outcome}: {live}. {inline(result.failure or 'unknown failure', 300)}"
    if result.outcome == "previewed" and target is not None:
        live = f"; {result.active_colour} keeps serving" if result.active_colour else ""
        return f"{outcome}: {inline(target.model, 80)} loaded and passed validation (not switched){live}"
    if result.outcome == "paused" and target is not None:
        return f"{outcome}: {inline(result.paused or '', 400)}"
    if result.outcome == "aborted":
        return f"{outcome}: all traffic is back on {result.active_colour}"
    if result.outcome == "rolled-back" and target is not None:
        return f"{outcome}: {target.colour} serves {inline(target.model, 80)} again"
    if result.outcome == "unchanged" and before is not None:
        return f"{outcome}: {before.colour} already serves {inline(before.model, 80)} with this spec"
    return outcome


def _plain_inline(text: str, limit: int = ANSWER_CHARS) -> str:
    """Untrusted text on one line of a terminal: whitespace collapsed, cut at `limit`, nothing escaped."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _policy(result: Result) -> list[str]:
    """The host policy's verdict; a refusal lists every violation, located in the spec."""
    verdict = result.policy
    if verdict is None or not verdict.found:
        return []  # no policy: the warning says so
    if not verdict.problems:
        return [f"Policy: {escape_inline(verdict.summary(), 300)}", ""]
    rows = [
        f"| {p.line}:{p.column} | {escape_inline(p.path or '-', 80)} | {escape_inline(p.message, 400)} |"
        for p in verdict.problems
    ]
    head = f"**Host policy**: {escape_inline(verdict.summary(), 300)}; nothing was changed."
    return [head, "", "| line | key | violation |", "| --- | --- | --- |", *rows, ""]


def render(result: Result) -> str:
    lines = [f"### bgdeploy {code_span(result.name, 60)}: {result.command}", "", headline(result), ""]
    plan = result.plan
    if plan is not None and plan.changes:
        lines += ["| change | before | after |", "| --- | --- | --- |"]
        lines += [f"| {c.what} | {escape_inline(c.before, 80)} | {escape_inline(c.after, 80)} |" for c in plan.changes]
        lines.append("")
    if result.gpu_lines:
        lines += ["GPUs on the host:", *[f"- {escape_inline(g, 200)}" for g in result.gpu_lines], ""]
    if plan is not None and plan.blockers:
        lines += ["**Preflight blockers:**", *[f"- {escape_inline(b, 400)}" for b in plan.blockers], ""]
    lines += _policy(result)
    if plan is not None and result.command == "plan":
        lines += ["Steps:", "", *[f"    {code_line(s.render(i))}" for i, s in enumerate(plan.steps, start=1)], ""]
    if result.validation is not None:
        new = result.target.colour if result.target else "new"
        old = result.previous_colour or "live"
        lines += [f"#### Validation of {new}", ""]
        lines += [*colour_table(result.validation, result.live_validation, new, old), ""]
        green = inline_only(result.validation, result.datasets)
        live = inline_only(result.live_validation, result.datasets) if result.live_validation else None
        tables = [
            _verdict_rows(green, live, new, old) if green.results else [],
            _checks(result.validation),
            relative_table(result.relative),
            dataset_tables(result.datasets, new, old, escape_inline),
            load_table(result.load_probe),
            # Aggregates and positions of disagreements only: no captured request is ever in a report.
            [f"Replay of captured live requests: {replay_line(result.replay)}"] if result.replay is not None else [],
        ]
        lines += [line for table in tables if table for line in (*table, "")]
    if result.smoke is not None:
        lines += ["#### Smoke test through the router", "", *_verdict_rows(result.smoke, None, "result", ""), ""]
    if result.canary:
        lines += _canary_rows(result)
    if result.bake is not None and not result.canary:
        b = result.bake
        p95 = format_seconds(b.p95_latency_s) if b.p95_latency_s is not None else "-"
        states: dict[LiveOutcome, str] = {
            "breached": "breached",
            "inconclusive": "inconclusive (too few requests)",
            "passed": "ok",
        }
        state = states[b.outcome]
        lines += [
            "#### Live traffic (bake)",
            "",
            f"{b.requests} requests, {b.errors} errors ({format_rate(b.error_rate)}){_which(b)}, p95 {p95}: {state}",
            *[f"- {escape_inline(breach_text(x), 300)}" for x in b.breaches],
            "",
        ]
    lines += model_charts(result.model_series)
    lines += prometheus_table(
        result.prometheus, result.target.colour if result.target else "new", result.previous_colour or "old"
    )
    if result.failed_logs:
        lines += ["#### Last log lines of the failed container", "", escape_block(result.failed_logs[-LOG_LINES:]), ""]
    if result.phases:
        lines += ["| phase | time | |", "| --- | --- | --- |"]
        lines += [f"| {p.name} | {format_seconds(p.seconds)} | {p.outcome} |" for p in result.phases]
        lines += ["", f"Total: {format_seconds(result.duration_s)}", ""]
    if result.warnings:
        lines += ["**Warnings:**", *[f"- {escape_inline(w, 400)}" for w in result.warnings], ""]
    return "\n".join(lines).rstrip() + "\n"
