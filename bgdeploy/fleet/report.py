"""The markdown report of a fleet command: one row per host, then each host's own report folded away.

Pure: renders a FleetResult. Host labels and model names come from the spec and the hosts: escaped.
"""

from __future__ import annotations

from bgdeploy.fleet.result import FleetResult, HostReport
from bgdeploy.plan.state import Release
from bgdeploy.plan.verdict import format_rate, format_seconds
from bgdeploy.report.markdown import escape_inline, render

_FLEET_OUTCOME = {
    "deployed": "✅ **Fleet deployed**",
    "unchanged": "⏸️ **Fleet unchanged**",
    "partial": "⚠️ **Fleet partly deployed**",
    "failed": "❌ **Fleet deploy failed**",
    "rolled-back": "↩️ **Fleet rolled back**",
    "planned": "📝 **Fleet planned**",
    "blocked": "❌ **Fleet deploy refused by preflight**",
    "paused": "⏸️ **Fleet paused**",
}
_HOST_OUTCOME = {
    "deployed": "✅ deployed",
    "unchanged": "⏸️ unchanged",
    "failed": "❌ failed",
    "rolled-back": "↩️ rolled back",
    "untouched": "➖ untouched",
    "blocked": "⛔ blocked",
    "planned": "📝 planned",
    "paused": "⏸️ paused",
    "previewed": "🔍 previewed",
}


def headline(result: FleetResult, *, markdown: bool = True) -> str:
    total = len(result.hosts)
    if result.command == "rollback":
        counts = f"{len(result.labels('rolled-back'))}/{total} hosts rolled back"
    elif result.command == "plan":
        counts = f"{len(result.labels('planned'))} of {total} hosts to change"
    else:
        counts = f"{len(result.hosts_deployed)}/{total} hosts deployed"
    if result.hosts_failed:
        counts += f", failed: {', '.join(result.hosts_failed)}"
    text = f"{_FLEET_OUTCOME.get(result.outcome, result.outcome)}: {result.name} ({counts})"
    if result.failure:
        text += f": {result.failure}"
    return text if markdown else text.replace("**", "")


def _release(release: Release | None) -> str:
    return "nothing" if release is None else escape_inline(f"{release.model} ({release.colour})", 60)


def _validation(host: HostReport) -> tuple[str, str]:
    verdict = host.result.validation if host.result else None
    if verdict is None:
        return "-", "-"
    measured = getattr(verdict, "ttft_p95_s", None)  # streamed validation only
    ttft = format_seconds(measured) if isinstance(measured, float) else "-"
    return format_rate(verdict.pass_rate), ttft


def host_rows(result: FleetResult) -> list[str]:
    rows = [
        "| host | batch | before | after | outcome | validation pass rate | TTFT p95 | time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for h in result.hosts:
        passed, ttft = _validation(h)
        outcome = _HOST_OUTCOME.get(h.outcome, h.outcome)
        if h.rollback is not None:
            outcome += " (rolled back)" if h.rollback.outcome == "rolled-back" else " (rollback failed)"
        cells = [
            escape_inline(h.label, 60),
            str(h.batch) if h.batch is not None else "-",
            _release(h.before),
            _release(h.after),
            outcome,
            passed,
            ttft,
            format_seconds(h.seconds) if h.seconds else "-",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def render_fleet(result: FleetResult) -> str:
    lines = [f"### {headline(result)}", ""]
    releases = set(result.releases_before().values())
    if len(releases) > 1:
        before = ", ".join(
            f"{escape_inline(k, 60)}: {escape_inline(v, 60)}" for k, v in result.releases_before().items()
        )
        lines += [f"Hosts were on different releases before this {result.command}: {before}.", ""]
    if result.batches:
        order = "; ".join(f"{i}: {', '.join(escape_inline(x, 60) for x in b)}" for i, b in enumerate(result.batches, 1))
        lines += [f"Batches: {order}", ""]
    lines += host_rows(result)
    blockers = [(h.label, b) for h in result.hosts for b in h.blockers]
    if blockers:
        lines += ["", "#### Preflight blockers (nothing was changed on any host)", ""]
        lines += [f"- **{escape_inline(label, 60)}**: {escape_inline(b, 400)}" for label, b in blockers]
    if result.warnings:
        lines += ["", *[f"> ⚠️ {escape_inline(w, 400)}" for w in result.warnings]]
    for h in result.hosts:
        parts = [r for r in (h.result, h.rollback) if r is not None]
        if not parts:
            continue
        lines += [
            "",
            f"<details><summary>{escape_inline(h.label, 60)}: {_HOST_OUTCOME.get(h.outcome, h.outcome)}</summary>",
            "",
        ]
        for part in parts:
            lines += [render(part), ""]
        lines.append("</details>")
    return "\n".join(lines) + "\n"


def render_text(result: FleetResult) -> str:
    """The plain-text summary printed at the end of a fleet command: one line per host."""
    lines = [headline(result, markdown=False)]
    for h in result.hosts:
        detail = h.failure or "; ".join(h.blockers)
        after = f" -> {h.after.model} ({h.after.colour})" if h.after and h.outcome == "deployed" else ""
        batch = f" batch {h.batch}" if h.batch else ""
        rolled = f", rolled back: {h.rollback.outcome}" if h.rollback is not None else ""
        lines.append(f"  {h.label}{batch}: {h.outcome}{after}{rolled}" + (f": {detail}" if detail else ""))
    return "\n".join(lines)
