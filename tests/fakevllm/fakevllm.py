#!/usr/bin/env python3
"""Stand-in for vLLM's OpenAI-compatible API server, for bgdeploy's tests.

It behaves like vLLM where a deploy can notice: nothing listens while the model "loads"; it serves
/health, /v1/models, /v1/completions, /v1/chat/completions (SSE when streaming) and /metrics with
vLLM's metric names; on SIGTERM it stops accepting connections and lets in-flight requests finish;
and it fails on demand. Standard library only; answers come from a small deterministic table.

Knobs (environment):
  FAKEVLLM_LOAD_SECONDS     seconds of "loading" before the socket is bound (default 2)
  FAKEVLLM_LATENCY_MS       added to each generation request, spread across tokens when streaming
  FAKEVLLM_STREAM_DELAY_MS  extra delay before each streamed token (the inter-token latency)
  FAKEVLLM_TTFT_MS          extra delay before the first token (the time to first token), streamed or not
  FAKEVLLM_WRONG_RATE       fraction of prompts answered wrong, picked by the prompt's text (crc32), so the
                            same prompts are wrong on every run and in any order
  FAKEVLLM_MAX_RUNNING      at most this many requests generate at once; the others queue and show in
                            vllm:num_requests_waiting (the queueing fault)
  FAKEVLLM_ERROR_RATE       fraction of generation requests answered 500: exactly floor(n * rate)
                            of the first n fail (0.05 fails every 20th)
  FAKEVLLM_FAULT            crash-on-load | never-ready | wrong-answers | die-after:N
  FAKEVLLM_DRAIN_SECONDS    how long SIGTERM waits for in-flight requests (default 60)
  FAKEVLLM_METRICS          off: no /metrics (404), as an OpenAI-compatible server that is not vLLM
  FAKEVLLM_FAIL_PATTERN     a regular expression: generation requests whose prompt text matches it are
                            answered 500 (the same prompts fail every time, whatever the order)
  VLLM_API_KEY              same as --api-key
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import itertools
import json
import math
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

VERSION = "0.0.0+fakevllm"
FAULTS = ("crash-on-load", "never-ready", "wrong-answers", "die-after:N")
MAX_BODY_BYTES = 16 * 1024 * 1024

# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------

# Ordered: a wrong answer is the capital of the next country, so it is never right by accident.
CAPITALS: dict[str, str] = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Portugal": "Lisbon",
    "United Kingdom": "London",
    "Japan": "Tokyo",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "Brazil": "Brasilia",
    "Egypt": "Cairo",
    "India": "New Delhi",
    "Kenya": "Nairobi",
}
_COUNTRIES = list(CAPITALS)
_OPERATORS = {
    "+": "+", "plus": "+",
    "-": "-", "minus": "-",
    "*": "*", "x": "*", "\u00d7": "*", "times": "*", "multiplied by": "*",
    "/": "/", "\u00f7": "/", "divided by": "/",
}  # fmt: skip
_NUMBER = r"-?\d+(?:\.\d+)?"
# Longest operators first, so that "multiplied by" is not read as something shorter.
_OPERATOR = "|".join(map(re.escape, sorted(_OPERATORS, key=len, reverse=True)))
_ARITHMETIC = re.compile(rf"({_NUMBER})\s*({_OPERATOR})\s*({_NUMBER})")


def _format_number(value: float) -> str:
    if value == int(value):
        return str(int(value))
    return f"{value:.4f}".rstrip("0")


def _capital_answer(low: str, wrong: bool) -> str | None:
    if "capital" not in low:
        return None
    # Longest names first so that a country contained in another name cannot shadow it.
    for country in sorted(_COUNTRIES, key=len, reverse=True):
        if country.lower() in low:
            if wrong:
                index = (_COUNTRIES.index(country) + 1) % len(_COUNTRIES)
                return f"The capital of {country} is {CAPITALS[_COUNTRIES[index]]}."
            return f"The capital of {country} is {CAPITALS[country]}."
    return None


def _arithmetic_answer(low: str, wrong: bool) -> str | None:
    match = _ARITHMETIC.search(low)
    if match is None:
        return None
    left, op, right = float(match.group(1)), _OPERATORS[match.group(2)], float(match.group(3))
    if op == "/" and right == 0:
        return "The answer is undefined."
    result = {"+": left + right, "-": left - right, "*": left * right}.get(op)
    if result is None:
        result = left / right
    if wrong:
        result += 1
    return f"The answer is {_format_number(result)}."


def wrong_by_rate(prompt: str, rate: float) -> bool:
    """Whether FAKEVLLM_WRONG_RATE makes this prompt's answer wrong: decided by its text alone."""
    return rate > 0 and zlib.crc32(prompt.encode()) % 10_000 < rate * 10_000


def tool_call_for(prompt: str, tools: list[Any], choice: Any, *, wrong: bool) -> dict[str, Any] | None:
    """The function call the stand-in makes when offered tools: the named one, else the first; arguments
    filled from the tool's parameters (a string gets the country the prompt names, else a word of it).
    A wrong answer calls it with no arguments at all. None when tool_choice is "none"."""
    if choice == "none" or not tools:
        return None
    functions = [t.get("function") for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if not functions:
        return None
    wanted = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    function = next((f for f in functions if f.get("name") == wanted), functions[0])
    low = prompt.lower()
    country = next((c for c in sorted(_COUNTRIES, key=len, reverse=True) if c.lower() in low), None)
    number = re.search(_NUMBER, prompt)
    arguments: dict[str, Any] = {}
    properties = (function.get("parameters") or {}).get("properties") or {}
    for key, schema in properties.items() if isinstance(properties, dict) else []:
        kind = schema.get("type") if isinstance(schema, dict) else None
        if kind in ("number", "integer"):
            value = float(number.group()) if number else 1.0
            arguments[key] = value if kind == "number" else int(value)
        elif kind == "boolean":
            arguments[key] = True
        else:
            arguments[key] = country or (prompt.split() or ["x"])[-1].strip("?.!")
    return {"name": str(function.get("name", "")), "arguments": json.dumps({} if wrong else arguments)}


def answer(prompt: str, *, wrong: bool = False) -> str:
    """The model's answer to a prompt; `wrong` gives a plausible but wrong one (the fault)."""
    low = prompt.lower()
    plain = _capital_answer(low, wrong) or _arithmetic_answer(low, wrong)
    if "json" in low:
        body = json.dumps({"answer": plain or "ok"})
        # A wrong JSON answer is cut short, so that it does not even parse.
        return body[: len(body) // 2] if wrong else body
    if plain is not None:
        return plain
    if wrong:
        return "I do not know."
    echo = " ".join(prompt.split())[:200]
    return f"I am a stand-in model. You said: {echo}"


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    model: str
    served_names: tuple[str, ...]
    host: str
    port: int
    api_key: str | None
    max_model_len: int
    load_seconds: float
    latency_s: float
    stream_delay_s: float
    ttft_s: float
    wrong_rate: float
    max_running: int
    error_rate: Fraction
    fault: str
    die_after: int | None
    drain_seconds: float
    metrics: bool = True
    fail_pattern: re.Pattern[str] | None = None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"fakevllm: {name}={raw!r} is not a number") from None
    if value < 0:
        raise SystemExit(f"fakevllm: {name}={raw!r} must not be negative")
    return value


def _group_unknown(unknown: list[str]) -> list[str]:
    """Pairs each unknown flag with its values, for a readable log line per flag."""
    groups: list[str] = []
    for token in unknown:
        if token.startswith("-") or not groups:
            groups.append(token)
        else:
            groups[-1] += f" {token}"
    return groups


def parse_config(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="fakevllm",
        description=__doc__,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name", nargs="+", default=None)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--revision", default=None)
    args, unknown = parser.parse_known_args(argv)
    for flag in _group_unknown(unknown):
        print(f"WARNING fakevllm: ignoring vLLM flag {flag}", file=sys.stderr, flush=True)
    if not 0 < args.gpu_memory_utilization <= 1:
        parser.error("--gpu-memory-utilization must be in (0, 1]")

    fault = os.environ.get("FAKEVLLM_FAULT", "").strip()
    die_after: int | None = None
    if fault.startswith("die-after:"):
        count = fault.partition(":")[2]
        if not count.isdigit() or int(count) < 1:
            parser.error(f"FAKEVLLM_FAULT={fault!r}: die-after needs a positive count")
        die_after = int(count)
    elif fault not in ("", *FAULTS):
        parser.error(f"FAKEVLLM_FAULT={fault!r}: expected one of {', '.join(FAULTS)}")

    raw_rate = os.environ.get("FAKEVLLM_ERROR_RATE", "").strip() or "0"
    try:
        error_rate = Fraction(raw_rate)
    except ValueError:
        parser.error(f"FAKEVLLM_ERROR_RATE={raw_rate!r} is not a number")
    if not 0 <= error_rate <= 1:
        parser.error(f"FAKEVLLM_ERROR_RATE={raw_rate!r} must be between 0 and 1")

    return Config(
        model=args.model,
        served_names=tuple(args.served_model_name or [args.model]),
        host=args.host,
        port=args.port,
        api_key=args.api_key or os.environ.get("VLLM_API_KEY") or None,
        max_model_len=args.max_model_len,
        load_seconds=_env_float("FAKEVLLM_LOAD_SECONDS", 2.0),
        latency_s=_env_float("FAKEVLLM_LATENCY_MS", 0.0) / 1000,
        stream_delay_s=_env_float("FAKEVLLM_STREAM_DELAY_MS", 0.0) / 1000,
        ttft_s=_env_float("FAKEVLLM_TTFT_MS", 0.0) / 1000,
        wrong_rate=min(1.0, _env_float("FAKEVLLM_WRONG_RATE", 0.0)),
        max_running=int(_env_float("FAKEVLLM_MAX_RUNNING", 0.0)),
        error_rate=error_rate,
        fault=fault,
        die_after=die_after,
        drain_seconds=_env_float("FAKEVLLM_DRAIN_SECONDS", 60.0),
        metrics=os.environ.get("FAKEVLLM_METRICS", "").strip().lower() != "off",
        fail_pattern=re.compile(pattern) if (pattern := os.environ.get("FAKEVLLM_FAIL_PATTERN", "")) else None,
    )


# ---------------------------------------------------------------------------------------------
# Logging, in vLLM's and uvicorn's shapes so that log scrapers see familiar lines
# ---------------------------------------------------------------------------------------------


def log(message: str, level: str = "INFO", *, stream: Any = None) -> None:
    stamp = time.strftime("%m-%d %H:%M:%S")
    print(f"{level} {stamp} [fakevllm.py] {message}", file=stream or sys.stdout, flush=True)


def uvicorn_log(message: str, level: str = "INFO") -> None:
    print(f"{level + ':':<9} {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# Metrics (Prometheus text format 0.0.4, as prometheus_client renders vLLM's)
# ---------------------------------------------------------------------------------------------

E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
               120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
# vLLM's (v0.10) buckets of vllm:inter_token_latency_seconds and vllm:time_per_output_token_seconds.
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
               20.0, 40.0, 80.0)  # fmt: skip
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.count += 1

    def render(self, name: str, labels: str) -> list[str]:
        lines = [
            f'{name}_bucket{{{labels},le="{bound}"}} {float(count)}'
            for bound, count in zip(self.buckets, self.counts, strict=True)
        ]
        lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {float(self.count)}')
        lines.append(f"{name}_count{{{labels}}} {float(self.count)}")
        lines.append(f"{name}_sum{{{labels}}} {self.total!r}")
        return lines


class Metrics:
    def __init__(self, model_name: str) -> None:
        self.lock = threading.Lock()
        self.labels = f'model_name="{_label_value(model_name)}"'
        self.running = 0
        self.success: dict[str, int] = {"stop": 0, "length": 0}
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.e2e = Histogram(E2E_BUCKETS)
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.waiting = 0

    @contextlib.contextmanager
    def track_running(self) -> Iterator[None]:
        with self.lock:
            self.running += 1
        try:
            yield
        finally:
            with self.lock:
                self.running -= 1

    @contextlib.contextmanager
    def track_waiting(self) -> Iterator[None]:
        with self.lock:
            self.waiting += 1
        try:
            yield
        finally:
            with self.lock:
                self.waiting -= 1

    def observe_itl(self, gaps: list[float]) -> None:
        with self.lock:
            for gap in gaps:
                self.itl.observe(gap)

    def finished(self, reasons: list[str], e2e_s: float, ttft_s: float, prompt_tokens: int, generated: int) -> None:
        with self.lock:
            for reason in reasons:  # vLLM counts each prompt of a batch as a request
                self.success[reason] = self.success.get(reason, 0) + 1
                self.e2e.observe(e2e_s)
                self.ttft.observe(ttft_s)
            self.prompt_tokens += prompt_tokens
            self.generation_tokens += generated

    def render(self) -> str:
        labels = self.labels
        with self.lock:
            # A deterministic stand-in for cache pressure: each running request holds 5 %.
            kv_usage = min(1.0, self.running * 0.05)
            out = [
                "# HELP vllm:num_requests_running Number of requests in model execution batches.",
                "# TYPE vllm:num_requests_running gauge",
                f"vllm:num_requests_running{{{labels}}} {float(self.running)}",
                "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
                "# TYPE vllm:num_requests_waiting gauge",
                f"vllm:num_requests_waiting{{{labels}}} {float(self.waiting)}",
                "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
                "# TYPE vllm:kv_cache_usage_perc gauge",
                f"vllm:kv_cache_usage_perc{{{labels}}} {kv_usage!r}",
                "# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.",
                "# TYPE vllm:num_preemptions_total counter",
                f"vllm:num_preemptions_total{{{labels}}} 0.0",
                "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
                "# TYPE vllm:prompt_tokens_total counter",
                f"vllm:prompt_tokens_total{{{labels}}} {float(self.prompt_tokens)}",
                "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
                "# TYPE vllm:generation_tokens_total counter",
                f"vllm:generation_tokens_total{{{labels}}} {float(self.generation_tokens)}",
                "# HELP vllm:request_success_total Count of successfully processed requests.",
                "# TYPE vllm:request_success_total counter",
            ]
            out += [
                f'vllm:request_success_total{{{labels},finished_reason="{reason}"}} {float(n)}'
                for reason, n in sorted(self.success.items())
            ]
            out += [
                "# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.",
                "# TYPE vllm:e2e_request_latency_seconds histogram",
                *self.e2e.render("vllm:e2e_request_latency_seconds", labels),
                "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
                "# TYPE vllm:time_to_first_token_seconds histogram",
                *self.ttft.render("vllm:time_to_first_token_seconds", labels),
                "# HELP vllm:inter_token_latency_seconds Histogram of inter-token latency in seconds.",
                "# TYPE vllm:inter_token_latency_seconds histogram",
                *self.itl.render("vllm:inter_token_latency_seconds", labels),
                "# HELP vllm:time_per_output_token_seconds Histogram of time per output token in seconds.",
                "# TYPE vllm:time_per_output_token_seconds histogram",
                *self.itl.render("vllm:time_per_output_token_seconds", labels),
            ]
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Server state shared by the handler threads
# ---------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered as OpenAI-style JSON."""

    def __init__(self, status: HTTPStatus, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": str(self),
                "type": self.error_type,
                "param": None,
                "code": int(self.status),
            }
        }


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics(config.served_names[0])
        self.started = int(time.time())
        self._lock = threading.Condition()
        self._in_flight = 0
        self._idle: dict[int, socket.socket] = {}
        self._closing = False
        self._generation_requests = 0
        self._v1_served = 0
        self._ids = itertools.count(1)
        self.slots = threading.BoundedSemaphore(config.max_running) if config.max_running > 0 else None

    @property
    def closing(self) -> bool:
        return self._closing

    def next_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):032x}"

    # Connection bookkeeping: idle keep-alive connections are closed at shutdown, the way
    # uvicorn does it, while requests already being answered are allowed to finish.
    def connection_idle(self, conn: socket.socket) -> bool:
        with self._lock:
            if self._closing:
                return False
            self._idle[id(conn)] = conn
            return True

    def connection_busy(self, conn: socket.socket) -> None:
        with self._lock:
            self._idle.pop(id(conn), None)

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                self._lock.notify_all()

    def begin_shutdown(self) -> None:
        with self._lock:
            self._closing = True
            idle = list(self._idle.values())
            self._idle.clear()
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def wait_drained(self, timeout: float) -> int:
        """Waits until no request is in flight; returns how many still are at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._in_flight and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(min(left, 1.0))
            return self._in_flight

    def should_fail(self) -> bool:
        """Deterministic error injection: the n-th request fails when floor(n * rate) grows."""
        with self._lock:
            self._generation_requests += 1
            n = self._generation_requests
        rate = self.config.error_rate
        return math.floor(n * rate) > math.floor((n - 1) * rate)

    def served_v1(self) -> None:
        limit = self.config.die_after
        if limit is None:
            return
        with self._lock:
            self._v1_served += 1
            if self._v1_served < limit:
                return
        log(f"FAKEVLLM_FAULT=die-after:{limit}: served {limit} /v1 requests, dying now", "ERROR")
        sys.stderr.flush()
        os._exit(137)  # abrupt, like the OOM killer: no cleanup, no drain


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


def _split_tokens(text: str) -> list[str]:
    """Words with their leading space, so that joining the pieces gives the text back."""
    words = text.split(" ")
    return [words[0], *(f" {word}" for word in words[1:])] if text else []


def _word_count(text: str) -> int:
    return len(text.split())


def _chat_prompt(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise ApiError(HTTPStatus.BAD_REQUEST, "messages must be a non-empty list", "BadRequestError")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


class Server(ThreadingHTTPServer):
    daemon_threads = True  # drain is tracked by App, so threads need not be joined
    request_queue_size = 128

    def __init__(self, app: App) -> None:
        self.app = app
        if ":" in app.config.host:
            self.address_family = socket.AF_INET6
        super().__init__((app.config.host, app.config.port), Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which can hang for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.app.config.host
        self.server_port = self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"  # keep-alive, as nginx upstream pools use it

    def version_string(self) -> str:
        return "uvicorn"

    @property
    def app(self) -> App:
        return self.server.app

    # -- connection lifecycle ------------------------------------------------------------

    def handle_one_request(self) -> None:
        if not self.app.connection_idle(self.connection):
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        finally:
            self.app.connection_busy(self.connection)

    def parse_request(self) -> bool:
        self.app.connection_busy(self.connection)
        return super().parse_request()

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        self.send_header("X-Model", self.app.config.model)
        if self.app.closing or self.request_version == "HTTP/1.0":
            self.send_header("Connection", "close")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._send_json(code, {"detail": message or HTTPStatus(code).phrase})

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        host, port = self.client_address[:2]
        try:
            phrase = HTTPStatus(int(code)).phrase
        except ValueError:
            phrase = ""
        uvicorn_log(f'{host}:{port} - "{self.requestline}" {code} {phrase}')

    def log_message(self, format: str, *args: Any) -> None:
        print(f"WARNING: {format % args}", file=sys.stderr, flush=True)

    # -- routing -------------------------------------------------------------------------

    def do_GET(self) -> None:
        with self.app.in_flight():
            self._route("GET")

    def do_POST(self) -> None:
        with self.app.in_flight():
            self._route("POST")

    def do_HEAD(self) -> None:
        with self.app.in_flight():
            self._route("GET")  # the body is left out by _send_json and _send_text

    def _method_not_allowed(self) -> None:
        with self.app.in_flight():
            self._route(self.command)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        routes = {
            "/health": ("GET", self._health),
            "/metrics": ("GET", self._metrics),
            "/version": ("GET", self._version),
            "/v1/models": ("GET", self._models),
            "/v1/completions": ("POST", self._completions),
            "/v1/chat/completions": ("POST", self._chat),
        }
        route = routes.get(path)
        try:
            # The body is read even when the answer is an error, so that keep-alive stays in step.
            body = self._read_body()
            if route is None:
                self._send_json(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
            elif route[0] != method:
                self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"detail": "Method Not Allowed"})
            elif path.startswith("/v1/") and not self._authorized():
                self._send_json(HTTPStatus.UNAUTHORIZED, {"error": "Unauthorized"})
            else:
                route[1](body)
        except ApiError as exc:
            self._send_json(exc.status, exc.body())
        except ConnectionError:  # the client went away, mid-stream for example
            self.close_connection = True
        if path.startswith("/v1/"):
            self.app.served_v1()

    def _authorized(self) -> bool:
        key = self.app.config.api_key
        if key is None:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {key}".encode())

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                try:
                    size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    raise ApiError(HTTPStatus.BAD_REQUEST, "bad chunk size", "BadRequestError") from None
                total += size
                if total > MAX_BODY_BYTES:
                    raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large", "BadRequestError")
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad Content-Length", "BadRequestError")
        return self.rfile.read(length) if length else b""

    # -- responses -----------------------------------------------------------------------

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_text(self, status: int, text: str, content_type: str) -> None:
        data = text.encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _health(self, _body: bytes) -> None:
        self._send_text(HTTPStatus.OK, "", "")

    def _metrics(self, _body: bytes) -> None:
        if not self.app.config.metrics:
            self._send_json(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
            return
        self._send_text(HTTPStatus.OK, self.app.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")

    def _version(self, _body: bytes) -> None:
        self._send_json(HTTPStatus.OK, {"version": VERSION})

    def _models(self, _body: bytes) -> None:
        config = self.app.config
        data = [
            {
                "id": name,
                "object": "model",
                "created": self.app.started,
                "owned_by": "vllm",
                "root": config.model,
                "parent": None,
                "max_model_len": config.max_model_len,
            }
            for name in config.served_names
        ]
        self._send_json(HTTPStatus.OK, {"object": "list", "data": data})

    # -- generation ----------------------------------------------------------------------

    def _request_json(self, body: bytes) -> dict[str, Any]:
        try:
            request = json.loads(body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"invalid JSON body: {exc}", "BadRequestError") from None
        if not isinstance(request, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "body must be a JSON object", "BadRequestError")
        return request

    def _served_name(self, request: dict[str, Any]) -> str:
        names = self.app.config.served_names
        model = request.get("model")
        if model is None:
            return names[0]
        if model not in names:
            raise ApiError(HTTPStatus.NOT_FOUND, f"The model `{model}` does not exist.", "NotFoundError")
        return str(model)

    def _max_tokens(self, request: dict[str, Any]) -> int | None:
        value = request.get("max_completion_tokens", request.get("max_tokens"))
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ApiError(HTTPStatus.BAD_REQUEST, "max_tokens must be a positive integer", "BadRequestError")
        return value

    def _chat(self, body: bytes) -> None:
        request = self._request_json(body)
        self._generate(request, "chat", [_chat_prompt(request.get("messages"))])

    def _completions(self, body: bytes) -> None:
        request = self._request_json(body)
        prompt = request.get("prompt")
        prompts: list[Any] = prompt if isinstance(prompt, list) else [prompt]
        if not prompts or not all(isinstance(item, str) for item in prompts):
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "prompt must be a string or a list of strings",
                "BadRequestError",
            )
        self._generate(request, "completion", prompts)

    def _generate(self, request: dict[str, Any], kind: str, prompts: list[str]) -> None:
        app = self.app
        served = self._served_name(request)
        max_tokens = self._max_tokens(request)
        if app.should_fail():
            raise ApiError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "EngineCore encountered an issue (injected by FAKEVLLM_ERROR_RATE).",
                "InternalServerError",
            )
        if app.config.fail_pattern is not None and any(app.config.fail_pattern.search(p) for p in prompts):
            raise ApiError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "EngineCore encountered an issue (injected by FAKEVLLM_FAIL_PATTERN).",
                "InternalServerError",
            )
        wrong_all = app.config.fault == "wrong-answers"
        response_format = request.get("response_format") if kind == "chat" else None
        json_format = isinstance(response_format, dict) and response_format.get("type") in (
            "json_object",
            "json_schema",
        )
        tools = request.get("tools") if kind == "chat" else None
        outputs: list[tuple[list[str], str]] = []
        # One entry per prompt: the function call made instead of text (streamed or not), or None.
        self.tool_calls: list[dict[str, Any] | None] = []
        for prompt in prompts:
            wrong = wrong_all or wrong_by_rate(prompt, app.config.wrong_rate)
            offered = tools if isinstance(tools, list) else []
            call = tool_call_for(prompt, offered, request.get("tool_choice"), wrong=wrong)
            self.tool_calls.append(call)
            if call is not None:
                outputs.append(([], "tool_calls"))
                continue
            # Structured output: the stand-in's JSON answer, {"answer": ...} (cut short when wrong).
            tokens = _split_tokens(answer(prompt + (" (json)" if json_format else ""), wrong=wrong))
            if max_tokens is not None and len(tokens) > max_tokens:
                outputs.append((tokens[:max_tokens], "length"))
            else:
                outputs.append((tokens, "stop"))
        prompt_tokens = sum(max(1, _word_count(prompt)) for prompt in prompts)
        completion_tokens = sum(len(tokens) for tokens, _ in outputs)
        usage = {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
        }
        ids = app.next_id("chatcmpl" if kind == "chat" else "cmpl")
        # vLLM's TTFT and e2e latency include the time a request waited in the queue.
        started = time.monotonic()
        if app.slots is not None:
            with app.metrics.track_waiting():
                app.slots.acquire()
        waited = time.monotonic() - started
        try:
            with app.metrics.track_running():
                if request.get("stream"):
                    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
                    ttft = self._stream(kind, ids, served, outputs, usage if include_usage else None)
                else:
                    ttft = self._respond(kind, ids, served, outputs, usage)
                elapsed = time.monotonic() - started
        finally:
            if app.slots is not None:
                app.slots.release()
        app.metrics.finished(
            [reason for _, reason in outputs], elapsed, waited + ttft, prompt_tokens, completion_tokens
        )

    def _respond(
        self,
        kind: str,
        ident: str,
        served: str,
        outputs: list[tuple[list[str], str]],
        usage: dict[str, int],
    ) -> float:
        delay = self.app.config.latency_s
        time.sleep(delay + self.app.config.ttft_s)
        choices: list[dict[str, Any]] = []
        calls = getattr(self, "tool_calls", [])
        for index, (tokens, reason) in enumerate(outputs):
            text = "".join(tokens)
            if kind == "chat":
                call = calls[index] if index < len(calls) else None
                tool_calls = [{"id": f"call-{index}", "type": "function", "function": call}] if call else []
                choices.append(
                    {
                        "index": index,
                        "finish_reason": reason,
                        "stop_reason": None,
                        "logprobs": None,
                        "message": {"role": "assistant", "content": None if call else text, "tool_calls": tool_calls},
                    }
                )
            else:
                choices.append(
                    {
                        "index": index,
                        "text": text,
                        "finish_reason": reason,
                        "stop_reason": None,
                        "logprobs": None,
                    }
                )
        self._send_json(
            HTTPStatus.OK,
            {
                "id": ident,
                "object": "chat.completion" if kind == "chat" else "text_completion",
                "created": int(time.time()),
                "model": served,
                "choices": choices,
                "usage": usage,
            },
        )
        count = max(1, max(len(tokens) for tokens, _ in outputs))
        return self.app.config.ttft_s + delay / count

    def _stream(
        self,
        kind: str,
        ident: str,
        served: str,
        outputs: list[tuple[list[str], str]],
        usage: dict[str, int] | None,
    ) -> float:
        config = self.app.config
        total_tokens = max(1, sum(len(tokens) for tokens, _ in outputs))
        per_token = config.latency_s / total_tokens + config.stream_delay_s
        chunked = self.request_version != "HTTP/1.0"
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True  # the end of the body is the end of the connection
        self.end_headers()
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        envelope = {"id": ident, "object": obj, "created": int(time.time()), "model": served}
        started = time.monotonic()
        ttft: float | None = None
        token_times: list[float] = []
        calls = getattr(self, "tool_calls", [])

        def event(payload: str) -> None:
            data = f"data: {payload}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

        def chunk(index: int, piece: str | None, reason: str | None) -> None:
            if kind == "chat":
                delta = {"role": "assistant", "content": ""} if piece is None else {"content": piece}
                choice: dict[str, Any] = {
                    "index": index,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": reason,
                }
            else:
                choice = {
                    "index": index,
                    "text": piece or "",
                    "logprobs": None,
                    "finish_reason": reason,
                    "stop_reason": None,
                }
            event(json.dumps({**envelope, "choices": [choice]}))

        def call_chunk(index: int, call: dict[str, Any], piece: int) -> None:
            # As vLLM streams a call: the name (with an id) first, then the arguments in pieces.
            arguments = call["arguments"]
            half = len(arguments) // 2
            if piece == 0:
                part: dict[str, Any] = {"index": 0, "id": f"call-{index}", "type": "function",
                                        "function": {"name": call["name"], "arguments": ""}}  # fmt: skip
            else:
                text = arguments[:half] if piece == 1 else arguments[half:]
                part = {"index": 0, "function": {"arguments": text}}
            reason = "tool_calls" if piece == 2 else None
            choice = {"index": index, "delta": {"tool_calls": [part]}, "logprobs": None, "finish_reason": reason}
            event(json.dumps({**envelope, "choices": [choice]}))

        for index, (tokens, reason) in enumerate(outputs):
            if kind == "chat":
                chunk(index, None, None)
            call = calls[index] if index < len(calls) else None
            pieces: list[Any] = [0, 1, 2] if call is not None else list(tokens)
            for position, piece in enumerate(pieces):
                time.sleep(per_token + (config.ttft_s if ttft is None else 0.0))
                last = position == len(pieces) - 1
                if call is not None:
                    call_chunk(index, call, piece)
                else:
                    chunk(index, piece, reason if last else None)
                token_times.append(time.monotonic())
                if ttft is None:
                    ttft = time.monotonic() - started
            if not pieces:
                chunk(index, "", reason)
        if usage is not None:
            event(json.dumps({**envelope, "choices": [], "usage": usage}))
        event("[DONE]")
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.app.metrics.observe_itl([b - a for a, b in itertools.pairwise(token_times)])
        return ttft if ttft is not None else time.monotonic() - started


# ---------------------------------------------------------------------------------------------
# Process lifecycle: load, serve, drain
# ---------------------------------------------------------------------------------------------

CRASH_TRACEBACK = """\
ERROR {stamp} [core.py:700] EngineCore failed to start.
Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/vllm/v1/engine/core.py", line 691, in run_engine_core
    engine_core = EngineCoreProc(*args, **kwargs)
  File "/usr/lib/python3/dist-packages/vllm/worker/model_runner.py", line 1712, in load_model
    self.model = get_model(vllm_config=self.vllm_config)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity \
of 139.72 GiB of which 1.10 GiB is free. (injected by FAKEVLLM_FAULT=crash-on-load)
RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {{}}
"""


def load(config: Config, stop: threading.Event) -> bool:
    """Pretends to load the model; False when a signal asked to stop meanwhile."""
    log(f"vLLM API server version {VERSION}")
    log(
        f"non-default args: model={config.model!r}, served_model_name={list(config.served_names)},"
        f" host={config.host!r}, port={config.port}, max_model_len={config.max_model_len}"
    )
    log(f"Starting to load model {config.model}...")
    shards = 4
    started = time.monotonic()
    for done in range(shards + 1):
        elapsed = time.monotonic() - started
        print(
            f"Loading safetensors checkpoint shards: {100 * done // shards:3d}% Completed | "
            f"{done}/{shards} [{elapsed:05.2f}s]",
            flush=True,
        )
        if done < shards and stop.wait(config.load_seconds / shards):
            return False
    log(f"Loading weights took {time.monotonic() - started:.2f} seconds")
    return True


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    stop = threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)
        if len(signals) > 1:
            uvicorn_log("Second signal: exiting without waiting for requests", "WARNING")
            os._exit(1)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if not load(config, stop):
        uvicorn_log("Shutting down (signal received while loading)")
        return 0
    if config.fault == "crash-on-load":
        sys.stderr.write(CRASH_TRACEBACK.format(stamp=time.strftime("%m-%d %H:%M:%S")))
        sys.stderr.flush()
        return 1
    if config.fault == "never-ready":
        # vLLM that never finishes starting never binds its port either.
        while not stop.wait(10.0):
            log("Waiting for the engine core to become ready (FAKEVLLM_FAULT=never-ready)...")
        uvicorn_log("Shutting down (signal received while loading)")
        return 0

    app = App(config)
    try:
        server = Server(app)
    except OSError as exc:
        log(
            f"[Errno {exc.errno}] error while attempting to bind on address "
            f"({config.host!r}, {config.port}): {exc.strerror}",
            "ERROR",
            stream=sys.stderr,
        )
        return 1
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="serve", daemon=True)
    serving.start()
    log(f"Starting vLLM API server on http://{config.host}:{config.port}")
    uvicorn_log(f"Started server process [{os.getpid()}]")
    uvicorn_log("Waiting for application startup.")
    uvicorn_log("Application startup complete.")

    while not stop.wait(1.0):
        pass
    uvicorn_log("Shutting down")
    # Stop accepting first: once the listening socket is closed, new connections are refused.
    app.begin_shutdown()
    server.shutdown()
    server.server_close()
    uvicorn_log("Waiting for connections to close. (CTRL+C to force quit)")
    left = app.wait_drained(config.drain_seconds)
    if left:
        uvicorn_log(f"Drain timeout ({config.drain_seconds:g} s): aborting {left} request(s)", "WARNING")
    uvicorn_log("Waiting for application shutdown.")
    uvicorn_log("Application shutdown complete.")
    uvicorn_log(f"Finished server process [{os.getpid()}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
