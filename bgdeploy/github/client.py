"""The GitHub API as this package uses it: a protocol that `bgdeploy.transports.github.GitHub` implements and
that tests can replace."""

from __future__ import annotations

from typing import Any, Protocol

from bgdeploy.transports.github import Comment, Deployment, PullRef


class GitHubApi(Protocol):
    def list_comments(self, repo: str, number: int) -> list[Comment]: ...

    def create_comment(self, repo: str, number: int, body: str) -> Comment: ...

    def update_comment(self, repo: str, comment_id: int, body: str) -> Comment: ...

    def authenticated_login(self) -> str | None: ...

    def pulls_for_commit(self, repo: str, sha: str) -> list[PullRef]: ...

    def create_deployment(
        self, repo: str, ref: str, environment: str, payload: dict[str, Any], description: str
    ) -> int: ...

    def deployment_status(
        self,
        repo: str,
        deployment_id: int,
        state: str,
        *,
        log_url: str | None = None,
        description: str = "",
        environment: str | None = None,
        environment_url: str | None = None,
    ) -> None: ...

    def last_successful_deployment(
        self, repo: str, environment: str, *, other_than: int | None = None, limit: int = 20
    ) -> Deployment | None: ...

    def close(self) -> None: ...
