"""GitHub's REST API (httpx): PR comments, merged-PR lookup, Deployments, typed. `GITHUB_API_URL` is respected.

Retries with backoff on 5xx, 429 and secondary rate limits. Every failure is a GitHubError, which the
callers turn into a warning: reporting must never fail or undo a deploy. The token never leaves headers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bgdeploy import __version__
from bgdeploy.errors import BgdeployError
from bgdeploy.untrusted import secrets

API_VERSION = "2022-11-28"
ATTEMPTS = 4
MAX_WAIT = 60.0
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class GitHubError(BgdeployError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _secondary_limit(response: httpx.Response) -> bool:
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    if response.headers.get("retry-after") or response.headers.get("x-ratelimit-remaining") == "0":
        return True
    return "rate limit" in response.text.lower()


class GitHub:
    def __init__(
        self,
        token: str,
        api_url: str = "https://api.github.com",
        *,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            base_url=api_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": f"bgdeploy/{__version__}",
            },
        )
        self._sleep = sleep
        secrets.register(token)

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One API call with retries; raises GitHubError (with the status) when it does not succeed."""
        delay = 1.0
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self._client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                if attempt == ATTEMPTS:
                    raise GitHubError(f"GitHub API {method} {_path(url)} failed: {type(exc).__name__}") from exc
                self._sleep(delay)
                delay *= 2
                continue
            retryable = response.status_code >= 500 or _secondary_limit(response)
            if response.is_success or not retryable or attempt == ATTEMPTS:
                break
            wait = _retry_after(response) or delay
            self._sleep(min(wait, MAX_WAIT))
            delay *= 2
        if not response.is_success:
            message = _message(response)
            raise GitHubError(
                f"GitHub API {method} {_path(url)}: HTTP {response.status_code}: {message}", response.status_code
            )
        return response

    def paginate(self, url: str, params: dict[str, Any] | None = None, limit: int = 50) -> list[Any]:
        """All items of a list endpoint, following `Link: rel="next"` to the end (at most `limit` pages)."""
        items: list[Any] = []
        next_url: str | None = url
        query: dict[str, Any] | None = {"per_page": 100, **(params or {})}
        for _ in range(limit):
            if next_url is None:
                break
            response = self.request("GET", next_url, params=query)
            items.extend(response.json())
            match = _NEXT.search(response.headers.get("link", ""))
            next_url = match.group(1) if match else None
            query = None  # the next link carries its own query
        return items

    # -- pull request comments ------------------------------------------------------------------------

    def list_comments(self, repo: str, number: int) -> list[Comment]:
        """Every comment of the issue or pull request, oldest first (all pages)."""
        return [Comment.from_json(c) for c in self.paginate(f"/repos/{repo}/issues/{number}/comments")]

    def create_comment(self, repo: str, number: int, body: str) -> Comment:
        data = self.request("POST", f"/repos/{repo}/issues/{number}/comments", json={"body": body}).json()
        return Comment.from_json(data)

    def update_comment(self, repo: str, comment_id: int, body: str) -> Comment:
        data = self.request("PATCH", f"/repos/{repo}/issues/comments/{comment_id}", json={"body": body}).json()
        return Comment.from_json(data)

    def authenticated_login(self) -> str | None:
        """The login of the token's user (`GET /user`), or None for a token that has no user (an app's or
        the Actions token: GitHub answers 403 there)."""
        try:
            data = self.request("GET", "/user").json()
        except GitHubError as exc:
            if exc.status in (401, 403, 404):
                return None
            raise
        login = data.get("login") if isinstance(data, dict) else None
        return str(login) if login else None

    def pulls_for_commit(self, repo: str, sha: str) -> list[PullRef]:
        data = self.request("GET", f"/repos/{repo}/commits/{sha}/pulls").json()
        return [PullRef(int(p["number"]), bool(p.get("merged_at"))) for p in data if isinstance(p, dict)]

    # -- deployments ------------------------------------------------------------------------------------

    def create_deployment(
        self, repo: str, ref: str, environment: str, payload: dict[str, Any], description: str
    ) -> int:
        body = {
            "ref": ref,
            "environment": environment,
            "auto_merge": False,
            "required_contexts": [],
            "payload": payload,
            "description": description[:140],
            "transient_environment": False,
            "production_environment": environment == "production",
        }
        data = self.request("POST", f"/repos/{repo}/deployments", json=body).json()
        if "id" not in data:
            raise GitHubError(f"GitHub did not create the deployment: {data.get('message', data)}")
        return int(data["id"])

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
    ) -> None:
        body: dict[str, Any] = {"state": state, "description": description[:140], "auto_inactive": False}
        if log_url:
            body["log_url"] = log_url
        if environment:
            body["environment"] = environment
        if environment_url:
            body["environment_url"] = environment_url  # the "View deployment" link on GitHub
        self.request("POST", f"/repos/{repo}/deployments/{deployment_id}/statuses", json=body)

    def deployments(self, repo: str, environment: str, *, limit: int = 30) -> list[Deployment]:
        """The newest deployments of `environment`, newest first."""
        data = self.request(
            "GET", f"/repos/{repo}/deployments", params={"environment": environment, "per_page": min(100, limit)}
        ).json()
        return [Deployment.from_json(d) for d in data if isinstance(d, dict)]

    def latest_state(self, repo: str, deployment_id: int) -> str | None:
        """The state of a deployment's newest status (success, failure, inactive, ...), None without one."""
        statuses = self.request(
            "GET", f"/repos/{repo}/deployments/{deployment_id}/statuses", params={"per_page": 1}
        ).json()
        return str(statuses[0].get("state")) if statuses and isinstance(statuses[0], dict) else None

    def last_successful_deployment(
        self, repo: str, environment: str, *, other_than: int | None = None, limit: int = 20
    ) -> Deployment | None:
        """The newest deployment of `environment` whose latest status is success (the live one)."""
        for deployment in self.deployments(repo, environment, limit=limit):
            if deployment.id == other_than:
                continue
            if self.latest_state(repo, deployment.id) == "success":
                return deployment
        return None


@dataclass(frozen=True)
class Comment:
    id: int
    body: str
    author: str
    html_url: str

    @classmethod
    def from_json(cls, data: Any) -> Comment:
        user = data.get("user") if isinstance(data.get("user"), dict) else {}
        return cls(
            id=int(data["id"]),
            body=str(data.get("body") or ""),
            author=str(user.get("login") or ""),
            html_url=str(data.get("html_url") or ""),
        )


@dataclass(frozen=True)
class Deployment:
    id: int
    environment: str
    payload: dict[str, Any]
    created_at: str
    sha: str

    @classmethod
    def from_json(cls, data: Any) -> Deployment:
        payload = data.get("payload")
        if isinstance(payload, str):  # GitHub returns a payload sent as a string as that string
            try:
                payload = json.loads(payload)
            except ValueError:
                payload = {}
        return cls(
            id=int(data["id"]),
            environment=str(data.get("environment") or ""),
            payload=payload if isinstance(payload, dict) else {},
            created_at=str(data.get("created_at") or ""),
            sha=str(data.get("sha") or ""),
        )


@dataclass(frozen=True)
class PullRef:
    number: int
    merged: bool


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value and value.strip().isdigit():
        return float(value)
    reset = response.headers.get("x-ratelimit-reset")
    if response.headers.get("x-ratelimit-remaining") == "0" and reset and reset.isdigit():
        return max(1.0, float(reset) - time.time())
    return None


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200]
    return str(data.get("message", ""))[:200] if isinstance(data, dict) else str(data)[:200]


def _path(url: str) -> str:
    return httpx.URL(url).path if "://" in url else url.split("?")[0]
