"""HTTP to the model servers and the router (httpx): health probes, validation prompts, /metrics.

Every call has a timeout. Failures become data (a probe state, an Answer with an error), because the
callers decide what a failure means: "still loading" while waiting, a failed prompt while validating.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from bgdeploy.plan.structured import ToolCall
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

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,  # a test's httpx.MockTransport stands in for the server
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

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

    def ask(self, prompt: Prompt, served_name: str, timeout: float, *, stream: bool = False) -> Answer:
        """Send one validation prompt. Streamed: time to first token, inter-token latency and token counts too."""
        path, body = request_body(prompt, served_name, stream=stream)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        start = time.monotonic()
        try:
            if stream:
                return self._ask_streamed(prompt, path, body, headers, timeout, start)
            response = self._client.post(path, json=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            return Answer(prompt.name, None, time.monotonic() - start, None, f"timed out after {timeout:g}s")
        except httpx.HTTPError as exc:
            return Answer(prompt.name, None, time.monotonic() - start, None, f"request failed: {type(exc).__name__}")
        latency = time.monotonic() - start
        if response.status_code != 200:
            return _http_error(prompt, latency, response.status_code, response.text)
        try:
            choice = response.json()["choices"][0]
            if path == CHAT_PATH:
                message = choice["message"]
                calls = _tool_calls(message.get("tool_calls"))
                text = message.get("content") or ("" if calls else None)
                if text is None:
                    raise KeyError("content")
            else:
                text, calls = choice["text"], ()
            usage = response.json().get("usage") or {}
            tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return Answer(prompt.name, None, latency, 200, "the answer is not an OpenAI-style completion")
        tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
        rate = tokens / latency if tokens is not None and latency > 0 else None
        return Answer(
            prompt.name, str(text), latency, 200, None, output_tokens=tokens, tokens_per_s=rate, tool_calls=calls
        )

    def _ask_streamed(
        self, prompt: Prompt, path: str, body: dict[str, Any], headers: dict[str, str], timeout: float, start: float
    ) -> Answer:
        """Read the server-sent events as they come; the clock starts before the request is sent."""
        reader = StreamReader(path == CHAT_PATH)
        with self._client.stream("POST", path, json=body, headers=headers, timeout=timeout) as response:
            if response.status_code != 200:
                response.read()
                return _http_error(prompt, time.monotonic() - start, response.status_code, response.text)
            done = False
            for line in response.iter_lines():
                if time.monotonic() - start > timeout:
                    return Answer(prompt.name, None, time.monotonic() - start, None, f"timed out after {timeout:g}s")
                # After [DONE] the body is read to its end, so that the connection can be used again.
                if not done:
                    done = not reader.feed(line, time.monotonic() - start)
        latency = time.monotonic() - start
        if reader.broken:
            return Answer(prompt.name, None, latency, 200, f"the stream is not OpenAI-style: {reader.broken}")
        tokens = reader.usage_tokens if reader.usage_tokens is not None else reader.chunks
        first = reader.times[0] if reader.times else None
        itl = (reader.times[-1] - reader.times[0]) / (len(reader.times) - 1) if len(reader.times) > 1 else None
        return Answer(
            prompt.name,
            reader.text(),
            latency,
            200,
            None,
            ttft_s=first,
            itl_s=itl,
            output_tokens=tokens,
            tokens_per_s=tokens / latency if latency > 0 else None,
            tool_calls=reader.calls(),
        )


CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"


def request_body(prompt: Prompt, served_name: str, *, stream: bool) -> tuple[str, dict[str, Any]]:
    """The path and JSON body of a prompt, as OpenAI-compatible servers (vLLM) take them."""
    body: dict[str, Any] = {
        "model": served_name,
        "max_tokens": prompt.max_tokens,
        "temperature": prompt.temperature,
    }
    if stream:
        # vLLM ends the stream with a usage chunk (token counts) when asked to.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if prompt.prompt is not None:
        body["prompt"] = prompt.prompt
        return COMPLETIONS_PATH, body
    system = [{"role": "system", "content": prompt.system}] if prompt.system else []
    if prompt.messages is not None:
        turns = [{"role": m.role, "content": m.content} for m in prompt.messages]
    else:
        turns = [{"role": "user", "content": prompt.chat or ""}]
    body["messages"] = [*system, *turns]
    for key in ("tools", "tool_choice", "response_format"):
        value = getattr(prompt, key)
        if value is not None:
            body[key] = value
    return CHAT_PATH, body


def _http_error(prompt: Prompt, latency: float, status: int, text: str) -> Answer:
    snippet = text.strip().replace("\n", " ")[:200]
    return Answer(prompt.name, None, latency, status, f"HTTP {status}: {snippet}")


def _tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    if not isinstance(raw, list):
        return ()
    calls: list[ToolCall] = []
    for item in raw:
        function = item.get("function") if isinstance(item, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            arguments = function.get("arguments")
            calls.append(ToolCall(function["name"], arguments if isinstance(arguments, str) else json.dumps(arguments)))
    return tuple(calls)


class StreamReader:
    """Server-sent events of a streamed completion: the text, the tool calls, and when each token arrived.

    A token is a chunk that carries content or a piece of a tool call; role-only chunks and the usage chunk
    are not tokens. `times` are seconds since the request was sent.
    """

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.pieces: list[str] = []
        self.times: list[float] = []
        self.chunks = 0
        self.usage_tokens: int | None = None
        self.broken: str | None = None
        self._calls: dict[int, list[str]] = {}  # index -> [name, arguments]

    def feed(self, line: str, at: float) -> bool:
        """One line of the stream; False once the stream is over ([DONE], or broken)."""
        if not line.startswith("data:"):
            return True  # blank separators, comments, event names
        data = line[5:].strip()
        if data == "[DONE]":
            return False
        try:
            event = json.loads(data)
            choices = event.get("choices") or []
            usage = event.get("usage")
        except (ValueError, AttributeError):
            self.broken = f"an event is not JSON: {data[:80]!r}"
            return False
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.usage_tokens = usage["completion_tokens"]
        token = False
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict):
                continue
            if self.chat:
                delta = choice.get("delta") or {}
                piece = delta.get("content") if isinstance(delta, dict) else None
                token |= self._call_pieces(delta.get("tool_calls") if isinstance(delta, dict) else None)
            else:
                piece = choice.get("text")
            if isinstance(piece, str) and piece:
                self.pieces.append(piece)
                token = True
        if token:
            self.chunks += 1
            self.times.append(at)
        return True

    def _call_pieces(self, raw: Any) -> bool:
        if not isinstance(raw, list):
            return False
        for item in raw:
            if not isinstance(item, dict):
                continue
            index = item.get("index", 0) if isinstance(item.get("index", 0), int) else 0
            slot = self._calls.setdefault(index, ["", ""])
            function = item.get("function") or {}
            if isinstance(function, dict):
                if isinstance(function.get("name"), str):
                    slot[0] += function["name"]
                if isinstance(function.get("arguments"), str):
                    slot[1] += function["arguments"]
        return bool(raw)

    def text(self) -> str:
        return "".join(self.pieces)

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(name, arguments) for _, (name, arguments) in sorted(self._calls.items()) if name)
