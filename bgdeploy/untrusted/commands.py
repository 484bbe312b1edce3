"""Log lines that cannot act as GitHub Actions workflow commands. Pure.

The runner trims leading whitespace from each line and then treats `::name ...::` at its start as a command,
and it matches the legacy `##[name]` form anywhere in a line. So an untrusted line is made inert by breaking
both patterns with a zero-width space (not whitespace to the runner, so it is not trimmed), which leaves the
line readable. Our own commands are written by `bgdeploy.github.workflow_commands`, never through here.
"""

from __future__ import annotations

ZWSP = "\u200b"


def inert_line(line: str) -> str:
    """One line that the runner will print but never run."""
    line = line.replace("\r", "")
    while "##[" in line:
        line = line.replace("##[", f"#{ZWSP}#[")
    stripped = line.lstrip()
    if stripped.startswith("::"):
        indent = line[: len(line) - len(stripped)]
        line = f"{indent}:{ZWSP}{stripped[1:]}"
    return line


def inert(text: str) -> str:
    """Every line of `text` made inert."""
    return "\n".join(inert_line(line) for line in text.split("\n"))
