"""HTTP to the model servers and the router (httpx): health probes, validation prompts, /metrics.

Every call has a timeout. Failures become data (a probe state, an Answer with an error), because the
callers decide what a failure means: "still loading" while waiting, a failed prompt while validating.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from bgdeploy.plan.verdict import Answer
from bgdeploy.spec.models import Prompt

ProbeState = Literal["ready", "loading", "unhealthy"]


@dataclass(frozen=True)
class Probe:
    state: ProbeState
    detail: str
    headers: dict[str, str]


class ServerClient:
    """One OpenAI-compatible server (a colour, or the router in front of them)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def probe(self, path: str, timeout: float) -> Probe:
        """vLLM does not listen while loading: a refused or reset connection means "still loading"."""
        try:
            response = self._client.get(path, timeout=timeout)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            return Probe("loading", type(exc).__name__, {})
        except httpx.TimeoutException:
            return Probe("loading", f"no answer within {timeout:g}s", {})
        except httpx.HTTPError as exc:
            return Probe("unhealthy", str(exc), {})
        headers = {k.lower(): v for k, v in response.headers.items()}
        if response.status_code == 200:
            return Probe("ready", "200", headers)
        return Probe("unhealthy", f"HTTP {response.status_code}", headers)

    def metrics(self, timeout: float = 5.0) -> str | None:
        try:
            response = self._client.get("/metrics", timeout=timeout)
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None

    def ask(self, prompt: Prompt, served_name: str, timeout: float) -> Answer:
        """Send one validation prompt; measure the whole answer's latency."""
        body: dict[str, Any] = {
            "model": served_name,
            "max_tokens": prompt.max_tokens,
            "temperature": prompt.temperature,
        }
        if prompt.chat is not None:
            messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
            body["messages"] = [*messages, {"role": "user", "content": prompt.chat}]
            path = "/v1/chat/completions"
        else:
            body["prompt"] = prompt.prompt
            path = "/v1/completions"
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        start = time.monotonic()
        try:
            response = self._client.post(path, json=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            return Answer(prompt.name, None, time.monotonic() - start, None, f"timed out after {timeout:g}s")
        except httpx.HTTPError as exc:
            return Answer(prompt.name, None, time.monotonic() - start, None, f"request failed: {type(exc).__name__}")
        latency = time.monotonic() - start
        if response.status_code != 200:
            snippet = response.text.strip().replace("\n", " ")[:200]
            return Answer(prompt.name, None, latency, response.status_code, f"HTTP {response.status_code}: {snippet}")
        try:
            choice = response.json()["choices"][0]
            text = choice["message"]["content"] if prompt.chat is not None else choice["text"]
        except (ValueError, KeyError, IndexError, TypeError):
            return Answer(prompt.name, None, latency, 200, "the answer is not an OpenAI-style completion")
        return Answer(prompt.name, str(text), latency, 200, None)
