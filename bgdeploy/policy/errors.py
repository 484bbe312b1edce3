"""The policy's errors, in bgdeploy's one exception tree: all of them exit 2 (invalid spec or usage)."""

from __future__ import annotations

from bgdeploy.errors import Problem, SpecError, UsageError


class PolicyFileError(SpecError):
    """The policy file itself is invalid; its problems are located in the policy file."""

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        super().__init__(filename, problems)
        count = len(self.problems)
        self.args = (
            f"the host policy {filename} is invalid ({count} problem{'s' if count != 1 else ''}); nothing was "
            "changed; the host's admin must fix it (`bgdeploy policy check --policy FILE` checks a copy)",
        )


class PolicyViolation(SpecError):
    """The spec breaks the host policy; every violation is located in the spec, as spec errors are."""

    def __init__(self, filename: str, problems: list[Problem], policy_path: str) -> None:
        super().__init__(filename, problems)
        self.policy_path = policy_path
        count = len(self.problems)
        self.args = (
            f"{filename}: {count} host policy violation{'s' if count != 1 else ''} ({policy_path}); nothing was "
            "changed",
        )


class PolicyUnsafe(UsageError):
    """The policy file could be rewritten by the deploy user (or cannot be read): it bounds nothing."""
