"""GitHub Actions workflow commands, built in one place. The one choke point for what reaches the job log.

Our own commands (`::error`, `::group::`, `::add-mask::`, `::stop-commands::`) are built here with their data
and properties escaped, and written raw. Everything else (text from a spec, a host, a container or a model)
goes through `Log.text`, which masks secrets and makes each line inert (`bgdeploy.untrusted.commands`).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterable

from bgdeploy.errors import Problem
from bgdeploy.untrusted.commands import inert
from bgdeploy.untrusted.secrets import MaskingStream, mask


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _escape_data(text: str) -> str:
    # `##[` is matched anywhere in a line by the runner's legacy parser: broken like any untrusted line.
    return inert(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: object) -> str:
    """`::name k=v,...::message` with the message and properties escaped (and secrets masked), so the data
    cannot end the command or start another one."""
    props = [f"{k}={_escape_property(mask(str(v)))}" for k, v in properties.items() if v is not None]
    joined = " " + ",".join(props) if props else ""
    return f"::{name}{joined}::{_escape_data(mask(message))}"


def error(
    message: str, *, file: str | None = None, line: int | None = None, col: int | None = None, title: str | None = None
) -> str:
    """An `::error` annotation line; GitHub shows it on the file and line in the PR's diff."""
    return command("error", message, file=file, line=line, col=col, title=title)


def problem_annotations(problems: Iterable[Problem], filename: str, title: str = "bluegreen.yaml") -> list[str]:
    """One `::error` annotation per located problem (of a spec, or of a file it names), for the PR's diff: the
    one place the CLI and the action turn spec errors and policy violations into annotations."""
    lines = []
    for p in problems:
        where = f"{p.path}: " if p.path else ""
        lines.append(error(f"{where}{p.message}", file=p.file or filename, line=p.line, col=p.column, title=title))
    return lines


def warning(message: str, *, title: str | None = None) -> str:
    return command("warning", message, title=title)


def notice(message: str, *, title: str | None = None) -> str:
    return command("notice", message, title=title)


def add_mask(value: str) -> list[str]:
    """`::add-mask::` lines for a secret: the whole value, and each line of a multi-line one (the runner masks
    per line, and a value with a newline cannot be one command)."""
    lines = [line.strip() for line in value.splitlines() if len(line.strip()) >= 4]
    return [f"::add-mask::{_escape_data(line)}" for line in dict.fromkeys(lines)]


class Log:
    """The job log: `command` for our own workflow commands, `text` for anything else."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._write = write

    def _raw(self, line: str) -> None:
        if self._write is not None:
            self._write(line)
            return
        stream = sys.stdout
        if isinstance(stream, MaskingStream):
            stream.raw_write(line)
        else:
            print(line, file=stream, flush=True)

    def command(self, line: str) -> None:
        self._raw(line)

    def text(self, text: str) -> None:
        """Untrusted or mixed text: masked, and no line of it can act as a workflow command."""
        self._raw(inert(mask(text)))

    def untrusted_block(self, text: str) -> None:
        """A long untrusted block (a report): inert line by line, and inside ::stop-commands:: as well."""
        token = secrets.token_hex(16)
        self.command(f"::stop-commands::{token}")
        self.text(text.replace(token, "***"))
        self.command(f"::{token}::")

    def group(self, title: str) -> None:
        self.command(command("group", inert(" ".join(title.split()))))

    def endgroup(self) -> None:
        self.command("::endgroup::")

    def mask_secret(self, value: str) -> None:
        for line in add_mask(value):
            self.command(line)
