"""GitHub's REST API (httpx): PR comments, merged-PR lookup, Deployments. `GITHUB_API_URL` is respected.

Retries with backoff on 5xx, 429 and secondary rate limits. Every failure is a GitHubError, which the
callers turn into a warning: reporting must never fail or undo a deploy. The token never leaves headers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from bgdeploy import __version__
from bgdeploy.errors import BgdeployError

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
                    raise GitHubError(f"GitHub API {method} {_path(url)} failed: {type(exc).__name__}") from None
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

    def upsert_comment(self, repo: str, number: int, marker: str, body: str) -> tuple[int, str, bool]:
        """Update the comment holding `marker`, or create one. Returns (id, html_url, created)."""
        for comment in self.paginate(f"/repos/{repo}/issues/{number}/comments"):
            if marker in (comment.get("body") or ""):
                updated = self.request("PATCH", f"/repos/{repo}/issues/comments/{comment['id']}", json={"body": body})
                data = updated.json()
                return int(data["id"]), str(data.get("html_url", "")), False
        created = self.request("POST", f"/repos/{repo}/issues/{number}/comments", json={"body": body}).json()
        return int(created["id"]), str(created.get("html_url", "")), True

    def pulls_for_commit(self, repo: str, sha: str) -> list[dict[str, Any]]:
        pulls: list[dict[str, Any]] = self.request("GET", f"/repos/{repo}/commits/{sha}/pulls").json()
        return pulls

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
    ) -> None:
        body: dict[str, Any] = {"state": state, "description": description[:140], "auto_inactive": False}
        if log_url:
            body["log_url"] = log_url
        if environment:
            body["environment"] = environment
        self.request("POST", f"/repos/{repo}/deployments/{deployment_id}/statuses", json=body)

    def last_successful_deployment(self, repo: str, environment: str, *, other_than: int) -> int | None:
        """The newest deployment of `environment` whose latest status is success (the one being replaced)."""
        deployments = self.request(
            "GET", f"/repos/{repo}/deployments", params={"environment": environment, "per_page": 20}
        ).json()
        for deployment in deployments:
            if int(deployment["id"]) == other_than:
                continue
            statuses = self.request(
                "GET", f"/repos/{repo}/deployments/{deployment['id']}/statuses", params={"per_page": 1}
            ).json()
            if statuses and statuses[0].get("state") == "success":
                return int(deployment["id"])
        return None


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
