"""A stand-in for the Prometheus HTTP API (GET /api/v1/query) on 127.0.0.1, answering from live scrapes.

It understands one shape of PromQL, a selector: `metric{label="value",...}`. Targets are the colours of a
deployment (found by the test, e.g. from docker), each with labels; a query's target labels pick the
targets, whose /metrics are scraped at query time, and the selector's other labels match the series.
Answers are vectors, as Prometheus gives them. A bearer token, when set, is required.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from bgdeploy.plan.metrics import parse

_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"([^"]*)"\s*,?')

Targets = Callable[[], list[tuple[dict[str, str], str]]]  # (target labels, base URL)


class PrometheusStub:
    def __init__(self, targets: Targets, token: str | None = None) -> None:
        self.targets = targets
        self.token = token
        self.queries: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/api/v1/query":
                    return self._send(404, {"status": "error", "error": "not found"})
                if stub.token and self.headers.get("Authorization") != f"Bearer {stub.token}":
                    return self._send(401, {"status": "error", "error": "unauthorized"})
                query = parse_qs(url.query).get("query", [""])[0]
                stub.queries.append(query)
                try:
                    result = stub.evaluate(query)
                except ValueError as exc:
                    return self._send(400, {"status": "error", "errorType": "bad_data", "error": str(exc)})
                return self._send(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def evaluate(self, query: str) -> list[dict[str, Any]]:
        match = _SELECTOR.match(query)
        if match is None:
            raise ValueError(f"the stand-in only answers selectors: {query!r}")
        name, body = match.group(1), match.group(2) or ""
        wanted = dict(_MATCHER.findall(body))
        result: list[dict[str, Any]] = []
        for labels, base in self.targets():
            if any(wanted.get(k, v) != v for k, v in labels.items()):
                continue
            try:
                text = httpx.get(f"{base}/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
            for sample in parse(text):
                own = {**dict(sample.labels), **labels}
                if sample.name == name and all(own.get(k) == v for k, v in wanted.items()):
                    result.append({"metric": {"__name__": name, **own}, "value": [time.time(), repr(sample.value)]})
        return result

    def __enter__(self) -> PrometheusStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
