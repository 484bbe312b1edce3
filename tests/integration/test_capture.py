"""Capture of live requests on the testbed: the router stores a bounded, private sample of request bodies on
the host; a keeper holds the bound with no bgdeploy command running; nothing captured leaves the host."""

from __future__ import annotations

import stat
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.deployments import Deployment, ok

pytestmark = pytest.mark.integration

MAX_BYTES = 64 * 1024


def capture_spec(sample: float = 1.0, **replay: Any) -> dict[str, Any]:
    return {"replay": {"capture": {"sample": sample, "max_bytes": "64k", "max_body": "4k"}, **replay}}


class Prompts:
    """Varied chat requests through the router, each with a marker that must never leave the host."""

    def __init__(self, url: str, marker: str, max_seconds: float = 120) -> None:
        self.url, self.marker, self.sent, self.failures = url, marker, 0, 0
        self._stop = threading.Event()
        self._max = max_seconds
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Prompts:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        deadline = time.monotonic() + self._max
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                text = f"{self.marker} question {self.sent}: what is {self.sent} plus {self.sent * 7}? " + "x" * 200
                body = {"model": "chat", "messages": [{"role": "user", "content": text}], "max_tokens": 8}
                self.sent += 1
                try:
                    if client.post("/v1/chat/completions", json=body).status_code != 200:
                        self.failures += 1
                except httpx.HTTPError:
                    self.failures += 1


def stored(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("capture.jsonl*") if p.is_file())


def test_the_capture_fills_to_its_bound_and_no_further(dep: Deployment) -> None:
    dep.name = "cap-" + uuid.uuid4().hex[:8]
    marker = "capmark" + uuid.uuid4().hex[:10]
    dep.write("acme/chat-v1", validation={"replay": capture_spec()["replay"]})
    ok(dep.run("deploy"))
    directory = dep.state_dir() / "router" / "capture"
    current = directory / "capture.jsonl"
    assert stat.S_IMODE(current.stat().st_mode) == 0o600
    largest = 0
    with Prompts(dep.url, marker) as prompts:
        # No bgdeploy command runs now: only the keeper holds the bound. Watch until it has cut the file twice.
        deadline = time.monotonic() + 90
        rotated = directory / "capture.jsonl.1"
        cuts, last_rotated = 0, None
        while time.monotonic() < deadline and cuts < 3:
            largest = max(largest, stored(directory))
            if rotated.exists():
                stamp = rotated.stat().st_mtime_ns
                cuts += stamp != last_rotated
                last_rotated = stamp
            time.sleep(0.02)
    assert prompts.failures == 0
    assert cuts >= 3, f"the keeper never rotated the capture ({prompts.sent} requests sent, {largest} bytes)"
    assert MAX_BYTES * 0.55 <= largest <= MAX_BYTES, largest
    for path in directory.glob("capture.jsonl*"):
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600, path
        assert info.st_uid == dep.state_dir().stat().st_uid, f"{path} is not the SSH user's"
    assert marker in current.read_text() + rotated.read_text()  # bodies are stored (on the host only)

    status = ok(dep.run("capture", "status", "--json"))
    assert '"keeper": "running"' in status and marker not in status
    purged = ok(dep.run("capture", "purge"))
    assert "deleted every captured request" in purged
    assert current.stat().st_size < 4096 and not rotated.exists()  # a request or two may have arrived since


def test_turning_capture_off_stops_the_keeper_and_deletes_the_capture(dep: Deployment) -> None:
    dep.name = "cap-" + uuid.uuid4().hex[:8]
    dep.write("acme/chat-v1", validation={"replay": capture_spec()["replay"]})
    ok(dep.run("deploy"))
    assert dep.chat().status_code == 200
    directory = dep.state_dir() / "router" / "capture"
    dep.wait_for(lambda: stored(directory) > 0, 30, "a request to be captured")
    dep.write("acme/chat-v2")
    out = ok(dep.run("deploy"))
    assert "capture: off" in out
    assert stored(directory) == 0
    assert dep.docker.containers.list(all=True, filters={"name": f"bgdeploy-{dep.name}-capture"}) == []
