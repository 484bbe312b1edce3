"""GitHub Actions workflow commands (`::error file=,line=,col=::`), escaped so data cannot forge one."""

from __future__ import annotations

import os


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def error(
    message: str, *, file: str | None = None, line: int | None = None, col: int | None = None, title: str | None = None
) -> str:
    """An `::error` annotation line; GitHub shows it on the file and line in the PR's diff."""
    props = [
        f"{name}={_escape_property(str(value))}"
        for name, value in (("file", file), ("line", line), ("col", col), ("title", title))
        if value is not None
    ]
    joined = " " + ",".join(props) if props else ""
    return f"::error{joined}::{_escape_data(message)}"
