"""The one exception tree of bgdeploy, and the exit code each branch maps to.

Every message a user sees says what failed, why, and what to do about it. Third-party exceptions are
caught only in transports and re-raised as one of these (`raise ... from exc`).
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_DEPLOY_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERNAL = 3


class BgdeployError(Exception):
    """Root of every error bgdeploy raises on purpose."""

    exit_code: int = EXIT_INTERNAL

    def __str__(self) -> str:
        # Messages quote hosts, containers and models: secrets are masked here, wherever the message goes.
        from bgdeploy.untrusted.secrets import mask

        return mask(super().__str__())


class UsageError(BgdeployError):
    """The command line or the environment is wrong (a missing file, an unknown flag)."""

    exit_code = EXIT_INVALID


@dataclass(frozen=True)
class Problem:
    """One problem found in a spec file, located at a line and column (both 1-based)."""

    path: str
    message: str
    line: int
    column: int
    file: str | None = None  # set when the problem is in another file the spec names (an eval set)

    def render(self, filename: str) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file or filename}:{self.line}:{self.column}: {where}{self.message}"


class SpecError(BgdeployError):
    """The spec file is invalid; carries every problem found, not just the first."""

    exit_code = EXIT_INVALID

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        self.filename = filename
        self.problems = sorted(set(problems), key=lambda p: (p.file or "", p.line, p.column, p.path, p.message))
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{filename}: {count} {noun} found; nothing was changed")

    def render(self) -> str:
        return "\n".join(p.render(self.filename) for p in self.problems)


class DeployFailed(BgdeployError):
    """A deploy could not finish; the previously live colour is still serving."""

    exit_code = EXIT_DEPLOY_FAILED


class TransportError(BgdeployError):
    """The host could not be reached or did not answer as expected (SSH, Docker, HTTP)."""

    exit_code = EXIT_DEPLOY_FAILED


class ConnectionLost(TransportError):
    """The connection to the host dropped (or never came up): what already changed on the host stays."""


class TransportTimeout(TransportError):
    """The host, its Docker engine or a server on it did not answer in time."""


class RemoteRefused(TransportError):
    """The remote side answered and said no: a failed command, a Docker API error, an HTTP error status."""


class InternalError(BgdeployError):
    """A bug or an unexpected state: report it with the command and its output."""

    exit_code = EXIT_INTERNAL
