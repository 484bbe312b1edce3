"""Capture of live requests on the testbed: the router stores a bounded, private sample of request bodies on
the host; a keeper holds the bound with no bgdeploy command running; nothing captured leaves the host."""

from __future__ import annotations

import json
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration import test_host_router
from tests.integration.conftest import Testbed
from tests.integration.deployments import Deployment, ok
from tests.integration.test_host_router import LocalDeployment

pytestmark = pytest.mark.integration

host_nginx = test_host_router.host_nginx  # the host's own nginx, for router.mode: host


@pytest.fixture
def local(testbed: Testbed, docker_client: Any, tmp_path: Path, host_nginx: None) -> Iterator[LocalDeployment]:
    deployment = LocalDeployment(testbed, tmp_path, docker_client)
    yield deployment
    deployment.cleanup()


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
    assert not directory.exists()
    assert dep.docker.containers.list(all=True, filters={"name": f"bgdeploy-{dep.name}-capture"}) == []


def send_prompts(dep: Deployment, marker: str, count: int, failing_every: int) -> None:
    with httpx.Client(base_url=dep.url, timeout=30) as client:
        for i in range(count):
            tag = "FAILME " if i % failing_every == 0 else ""
            text = f"{tag}{marker} prompt {i}: name a city that starts with {chr(65 + i % 26)}"
            body = {
                "model": "chat",
                "messages": [{"role": "user", "content": text}],
                "max_tokens": 16,
                "stream": i % 2 == 0,
            }
            assert client.post("/v1/chat/completions", json=body).status_code == 200


def lines_stored(directory: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in directory.glob("capture.jsonl*") if p.is_file())


def test_replay_refuses_a_green_failing_captured_prompts_and_passes_an_equal_one(
    dep: Deployment, tmp_path: Path
) -> None:
    dep.name = "cap-" + uuid.uuid4().hex[:8]
    marker = "capmark" + uuid.uuid4().hex[:10]
    validation = {
        "replay": {"capture": {"sample": 1, "max_bytes": "1m", "max_body": "8k"}, "requests": 100, "seed": 1},
        "thresholds": {"replay": {"max_error_rate": 0.05, "max_latency_p95_vs_live": 50}},
    }
    dep.write("acme/chat-v1", validation=validation)
    ok(dep.run("deploy"))
    directory = dep.state_dir() / "router" / "capture"
    send_prompts(dep, marker, 60, failing_every=10)  # 6 of 60 captured prompts say FAILME
    dep.wait_for(lambda: lines_stored(directory) >= 60, 30, "60 captured requests")

    outputs: list[str] = []
    dep.write("acme/chat-v2", env={"FAKEVLLM_FAIL_PATTERN": "FAILME"}, validation=validation)
    refused = dep.run("deploy", "--json", str(tmp_path / "refused.json"), "--report", str(tmp_path / "refused.md"))
    outputs += [refused.stdout, refused.stderr]
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "failed the replay of captured live requests" in refused.stdout + refused.stderr
    # The 6 FAILME prompts fail on green, of 60 plus the first deploy's smoke prompt through the router.
    assert "failed: max_error_rate: 9.8% of 61 failed (at most 5.0%)" in refused.stdout
    assert dep.serving_model() == "acme/chat-v1"

    dep.write("acme/chat-v2", validation=validation)
    passed = dep.run("deploy", "--json", str(tmp_path / "passed.json"), "--report", str(tmp_path / "passed.md"))
    outputs += [passed.stdout, passed.stderr]
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "captured requests replayed: green 0.0% errors" in passed.stderr
    assert "Replay of captured live requests:" in (tmp_path / "passed.md").read_text()
    assert dep.serving_model() == "acme/chat-v2"
    for name in ("refused.json", "passed.json"):
        replay = json.loads((tmp_path / name).read_text())["replay"]
        assert replay["green"]["requests"] == replay["available"] >= 61
    assert json.loads((tmp_path / "refused.json").read_text())["replay"]["green"]["errors"] == 6
    status = ok(dep.run("capture", "status", "--json"))
    outputs.append(status)

    # No captured body in any artefact: outputs, reports, --json, every file of the state directory but the
    # capture itself, and the logs of every container of the deployment.
    artefacts = {f"output {i}": text for i, text in enumerate(outputs)}
    for path in tmp_path.rglob("*"):
        if path.is_file():
            artefacts[str(path)] = path.read_text(errors="replace")
    for path in dep.state_dir().rglob("*"):
        if path.is_file() and path.parent != directory:
            artefacts[str(path)] = path.read_text(errors="replace")
    for container in dep.docker.containers.list(all=True, filters={"label": f"dev.bgdeploy.name={dep.name}"}):
        artefacts[f"logs of {container.name}"] = container.logs().decode(errors="replace")
    assert len(artefacts) > 8
    leaks = [where for where, text in artefacts.items() if marker in text]
    assert leaks == [], f"captured content found in {leaks}"
    assert marker in (directory / "capture.jsonl").read_text()  # it is there, on the host, where it belongs


def test_host_mode_captures_through_the_host_s_nginx(local: LocalDeployment) -> None:
    local.name = "cap-" + uuid.uuid4().hex[:8]
    marker = "capmark" + uuid.uuid4().hex[:10]
    local.write("acme/chat-v1", validation={"replay": capture_spec()["replay"]})
    ok(local.run("deploy"))
    directory = local.state_dir() / "router" / "capture"
    for i in range(5):
        assert local.chat(f"{marker} host mode {i}").status_code == 200
    local.wait_for(lambda: lines_stored(directory) >= 5, 30, "5 captured requests")
    assert stat.S_IMODE((directory / "capture.jsonl").stat().st_mode) == 0o600
    assert marker in (directory / "capture.jsonl").read_text()
    status = ok(local.run("capture", "status"))
    assert "keeper running" in status and marker not in status
    ok(local.run("capture", "purge"))
    assert lines_stored(directory) == 0


def test_list_shows_the_keeper_and_remove_takes_it_with_the_capture(dep: Deployment) -> None:
    dep.name = "cap-" + uuid.uuid4().hex[:8]
    dep.write("acme/chat-v1", validation={"replay": capture_spec()["replay"]})
    ok(dep.run("deploy"))
    assert dep.chat().status_code == 200
    directory = dep.state_dir() / "router" / "capture"
    dep.wait_for(lambda: stored(directory) > 0, 30, "a request to be captured")
    listed = {row["name"]: row for row in json.loads(ok(dep.run("list", "--json")))["deployments"]}
    row = listed[dep.name]
    assert row["capture"] == "running" and row["leftovers"] == [], row
    assert f"bgdeploy-{dep.name}-capture" in row["containers"], row
    status = ok(dep.run("status"))
    assert "capture: on, keeper running: " in status and "of at most 64.0 KiB" in status, status
    out = ok(dep.run("remove", "--yes"))
    assert f"container bgdeploy-{dep.name}-capture" in out, out
    assert not directory.exists()
    assert dep.docker.containers.list(all=True, filters={"label": f"dev.bgdeploy.name={dep.name}"}) == []
