"""The sticky PR comment: its hidden marker, its body, which existing comment is ours. Pure.

One comment per deployment name, found again by a hidden marker. Only a comment written by the identity of the
token in use may be updated: anyone can post a comment holding the marker (a look-alike), and editing theirs
would put our report under their name, or let them steer which comment we overwrite.
"""

from __future__ import annotations

from collections.abc import Iterable

from bgdeploy.errors import SpecError
from bgdeploy.transports.github import Comment
from bgdeploy.untrusted.markdown import code_span, escape_inline
from bgdeploy.untrusted.secrets import mask

COMMENT_LIMIT = 65_536  # GitHub refuses longer comment bodies


def marker(name: str) -> str:
    """The hidden marker that finds this deployment's comment again (one comment per deployment name)."""
    return f"<!-- bgdeploy:{name} -->"


def ours(comments: Iterable[Comment], name: str, author: str) -> Comment | None:
    """Our comment: written by `author` and starting with the marker (a report quoting a marker further down
    is never taken for the comment of another deployment)."""
    head = marker(name)
    for comment in comments:
        if comment.author.lower() == author.lower() and comment.body.lstrip().startswith(head):
            return comment
    return None


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
    """The marker, the report (masked, cut to fit) and a link to the run."""
    footer = f"\n\n<sub>bgdeploy · [workflow run]({run_url})</sub>\n" if run_url else "\n"
    head = marker(name) + "\n"
    return head + _fit(mask(report_markdown), limit - len(head) - len(footer)) + footer


def spec_errors_markdown(error: SpecError, name: str | None) -> str:
    lines = [
        f"### bgdeploy {code_span(name or error.filename, 60)}: validate",
        "",
        f"⚠️ **Invalid spec**: {len(error.problems)} problem(s) in {code_span(error.filename, 200)}; "
        "nothing was changed on the server.",
        "",
        "| line | key | problem |",
        "| --- | --- | --- |",
    ]
    for p in error.problems:
        lines.append(f"| {p.line}:{p.column} | {escape_inline(p.path or '-', 80)} | {escape_inline(p.message, 400)} |")
    return "\n".join(lines) + "\n"
