"""Steady client traffic through a bgdeploy router: plain and streaming chats, counted as a user would.

Used by scripts/demo and bench/cutover.py. Only loopback URLs are accepted; it runs for a bounded time.

    python bench/traffic.py --url http://127.0.0.1:18080 --seconds 60 [--stop-file F] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

QUESTION = "What is the capital of France?"


class Traffic:
    """Background clients (one plain, one streaming) recording (sent_at, model) and every failure."""

    def __init__(self, url: str, max_seconds: float = 600, pause: float = 0.02) -> None:
        host = urlparse(url).hostname or ""
        if not (host.startswith("127.") or host == "localhost"):
            raise SystemExit(f"traffic is only sent to loopback, not {host}")
        self.url = url.rstrip("/")
        self.sent = 0
        self.failures: list[str] = []
        self.answers: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._max = max_seconds
        self._pause = pause
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(s,), daemon=True) for s in (False, True)]

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _loop(self, stream: bool) -> None:
        deadline = time.monotonic() + self._max
        body = {"model": "chat", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 32,
                "stream": stream}
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                sent_at = time.monotonic()
                problem, model = self._one(client, body, stream)
                with self._lock:
                    self.sent += 1
                    if problem:
                        self.failures.append(f"{'stream' if stream else 'plain'}: {problem}")
                    else:
                        self.answers.append((sent_at, model))
                time.sleep(self._pause)

    def _one(self, client: httpx.Client, body: dict[str, Any], stream: bool) -> tuple[str | None, str]:
        try:
            with client.stream("POST", f"{self.url}/v1/chat/completions", json=body) as response:
                text = "".join(response.iter_text())
                model = response.headers.get("x-model", "?")
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", ""
        if response.status_code != 200:
            return f"HTTP {response.status_code}", model
        if stream and not text.rstrip().endswith("data: [DONE]"):
            return "stream cut short", model
        return None, model

    def summary(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": len(self.failures), "by_model": dict(Counter(m for _, m in self.answers)),
                "failures": self.failures[:10]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--stop-file", help="stop early once this file exists")
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args()
    traffic = Traffic(args.url, max_seconds=args.seconds).start()
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline and not (args.stop_file and Path(args.stop_file).exists()):
        time.sleep(0.2)
    traffic.stop()
    summary = traffic.summary()
    by_model = ", ".join(f"{model}: {count}" for model, count in summary["by_model"].items())
    print(f"client: {summary['sent']} requests sent, {summary['failed']} failed ({by_model})")
    for failure in summary["failures"]:
        print(f"client: failure: {failure}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
