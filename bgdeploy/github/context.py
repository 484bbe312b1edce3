"""The GitHub run, from the environment a runner sets and the event payload it points at."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PULL_REQUEST_EVENTS = ("pull_request", "pull_request_target")
ACTIONS_BOT = "github-actions[bot]"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass
class Context:
    env: Mapping[str, str]
    event: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Context:
        event: dict[str, Any] = {}
        path = env.get("GITHUB_EVENT_PATH")
        if path and Path(path).is_file():
            try:
                event = _dict(json.loads(Path(path).read_text()))
            except (OSError, ValueError):
                event = {}
        return cls(env, event)

    def get(self, name: str, default: str = "") -> str:
        return self.env.get(name, default) or default

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name).strip().lower()
        if not value:
            return default
        return value not in ("false", "0", "no", "off")

    @property
    def event_name(self) -> str:
        return self.get("GITHUB_EVENT_NAME")

    @property
    def is_pull_request(self) -> bool:
        return self.event_name in PULL_REQUEST_EVENTS

    @property
    def repo(self) -> str:
        return self.get("GITHUB_REPOSITORY")

    @property
    def api_url(self) -> str:
        return self.get("GITHUB_API_URL", "https://api.github.com")

    @property
    def token(self) -> str:
        return self.get("BGDEPLOY_GITHUB_TOKEN") or self.get("GITHUB_TOKEN")

    @property
    def has_ssh_key(self) -> bool:
        return bool(self.get("BGDEPLOY_SSH_KEY").strip() or self.get("BGDEPLOY_SSH_KEY_FILE").strip())

    @property
    def run_url(self) -> str | None:
        server, run = self.get("GITHUB_SERVER_URL", "https://github.com"), self.get("GITHUB_RUN_ID")
        return f"{server}/{self.repo}/actions/runs/{run}" if self.repo and run else None

    @property
    def pull_request(self) -> dict[str, Any]:
        return _dict(self.event.get("pull_request"))

    @property
    def pr_number(self) -> int | None:
        number = self.pull_request.get("number")
        return number if isinstance(number, int) else None

    @property
    def from_fork(self) -> bool:
        """A pull request whose head lives in another repository: its `pull_request` token is read-only and
        it receives no secrets."""
        pr = self.pull_request
        head = _dict(_dict(pr.get("head")).get("repo")).get("full_name")
        base = _dict(_dict(pr.get("base")).get("repo")).get("full_name")
        return bool(pr) and bool(head) and head != base

    @property
    def default_branch(self) -> str | None:
        branch = _dict(self.event.get("repository")).get("default_branch")
        return str(branch) if branch else None

    @property
    def sha(self) -> str:
        head = _dict(self.pull_request.get("head"))
        return str(head.get("sha") or self.get("GITHUB_SHA"))
