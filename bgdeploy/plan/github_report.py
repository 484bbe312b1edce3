"""What the GitHub Action says: the mode for an event, the PR comment body, the step outputs. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from bgdeploy.errors import SpecError
from bgdeploy.plan.report import escape_inline
from bgdeploy.plan.result import Result

COMMENT_LIMIT = 65_536  # GitHub refuses longer comment bodies
MODES = ("auto", "validate", "plan", "preview", "deploy", "rollback", "promote", "promote-full", "abort")


def marker(name: str) -> str:
    """The hidden marker that finds this deployment's comment again (one comment per deployment name)."""
    return f"<!-- bgdeploy:{name} -->"


@dataclass(frozen=True)
class Decision:
    mode: str
    why: str


def decide_mode(requested: str, event_name: str, ref: str, default_branch: str | None, preview: bool) -> Decision:
    """`auto`: validate + plan on pull requests (+ preview when asked), deploy on a push to the default branch."""
    if requested != "auto":
        return Decision(requested, f"mode: {requested} was asked for")
    if event_name in ("pull_request", "pull_request_target"):
        if preview:
            return Decision("preview", "a pull request, and a preview was asked for (validation.preview_on_pr)")
        return Decision("plan", "a pull request: validate and plan")
    if event_name == "push":
        branch = ref.removeprefix("refs/heads/")
        if default_branch is None or branch == default_branch:
            return Decision("deploy", f"a push to {branch}")
        return Decision("plan", f"a push to {branch}, not the default branch {default_branch}: plan only")
    if event_name == "workflow_dispatch":
        return Decision("plan", "workflow_dispatch without a mode input: plan only (set mode: deploy to deploy)")
    return Decision("validate", f"event {event_name}: validate only")


def _fit(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = "\n\n_…truncated to fit GitHub's comment limit: the full report is in the job summary._\n"
    cut = text[: limit - len(note)]
    cut = cut[: cut.rfind("\n")] if "\n" in cut else cut
    if cut.count("```") % 2 == 1:
        cut += "\n```"  # never leave a code fence open
    return cut + note


def comment_body(report_markdown: str, name: str, run_url: str | None, limit: int = COMMENT_LIMIT) -> str:
    footer = f"\n\n<sub>bgdeploy · [workflow run]({run_url})</sub>\n" if run_url else "\n"
    head = marker(name) + "\n"
    return head + _fit(report_markdown, limit - len(head) - len(footer)) + footer


def spec_errors_markdown(error: SpecError, name: str | None) -> str:
    lines = [
        f"### bgdeploy `{escape_inline(name or error.filename, 60)}`: validate",
        "",
        f"⚠️ **Invalid spec**: {len(error.problems)} problem(s) in `{escape_inline(error.filename, 200)}`; "
        "nothing was changed on the server.",
        "",
        "| line | key | problem |",
        "| --- | --- | --- |",
    ]
    for p in error.problems:
        lines.append(f"| {p.line}:{p.column} | {escape_inline(p.path or '-', 80)} | {escape_inline(p.message, 400)} |")
    return "\n".join(lines) + "\n"


def outputs(result: Result | None, outcome: str, report_path: str, deployment_id: int | None) -> dict[str, str]:
    target = result.target if result else None
    return {
        "outcome": outcome,
        "active-color": (result.active_colour or "") if result else "",
        "previous-color": (result.previous_colour or "") if result else "",
        "model": target.model if target else "",
        "report-path": report_path,
        "deployment-id": str(deployment_id) if deployment_id is not None else "",
    }
