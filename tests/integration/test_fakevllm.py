"""The fakevllm image behaves like vLLM where a deploy can notice it.

Containers are named bgdeploy-test-*, reached only on 127.0.0.1, and always removed. Two ways in:
a published port (what bgdeploy does), which goes through docker-proxy when dockerd runs without
iptables; and host networking, where "nothing listens" shows as a real connection refusal.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import httpx
import pytest

pytestmark = pytest.mark.integration

MODEL = "org/model-v1"
SERVED = "chat"
QUESTION = {"role": "user", "content": "What is the capital of France?"}
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Polls `probe` until it returns something other than None, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Fakevllm:
    container: Any
    base_url: str

    def logs(self) -> str:
        return str(self.container.logs().decode(errors="replace"))

    def health_status(self) -> int | None:
        try:
            return httpx.get(f"{self.base_url}/health", timeout=2).status_code
        except httpx.TransportError:
            return None

    def wait_ready(self, timeout: float = 30) -> None:
        def probe() -> bool | None:
            self.container.reload()
            if self.container.status == "exited":
                raise AssertionError(f"container exited while loading:\n{self.logs()}")
            return True if self.health_status() == 200 else None

        wait_for("/health 200", probe, timeout)

    def wait_loading(self, timeout: float = 30) -> None:
        wait_for(
            "the load to begin",
            lambda: True if "Starting to load" in self.logs() else None,
            timeout,
        )

    def chat(self, **extra: Any) -> httpx.Response:
        body = {"model": SERVED, "messages": [QUESTION], **extra}
        return httpx.post(f"{self.base_url}/v1/chat/completions", json=body, timeout=30)


class Launcher:
    """Starts fakevllm containers and removes every one of them on close()."""

    def __init__(self, client: Any, image: str) -> None:
        self.client = client
        self.image = image
        self.containers: list[Any] = []

    def start(self, env: dict[str, str] | None = None, host_network: bool = False) -> Fakevllm:
        port = free_port()
        command = ["--model", MODEL, "--served-model-name", SERVED, "--enforce-eager"]
        options: dict[str, Any] = {}
        if host_network:
            command += ["--host", "127.0.0.1", "--port", str(port)]
            options["network_mode"] = "host"
        else:
            options["ports"] = {"8000/tcp": ("127.0.0.1", port)}
        container = self.client.containers.run(
            self.image,
            command,
            name=f"bgdeploy-test-fakevllm-{uuid.uuid4().hex[:12]}",
            environment={"FAKEVLLM_LOAD_SECONDS": "0.2", **(env or {})},
            detach=True,
            **options,
        )
        self.containers.append(container)
        return Fakevllm(container, f"http://127.0.0.1:{port}")

    def close(self) -> None:
        for container in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


@pytest.fixture
def launcher(docker_client: Any, testbed: Any) -> Iterator[Launcher]:
    launch = Launcher(docker_client, testbed.fakevllm_image)
    yield launch
    launch.close()


@pytest.fixture(scope="module")
def ready(docker_client: Any, testbed: Any) -> Iterator[Fakevllm]:
    """One loaded server on a published port, shared by the read-mostly tests."""
    launch = Launcher(docker_client, testbed.fakevllm_image)
    try:
        server = launch.start()
        server.wait_ready()
        yield server
    finally:
        launch.close()


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


def test_nothing_listens_while_loading(launcher: Launcher) -> None:
    server = launcher.start({"FAKEVLLM_LOAD_SECONDS": "3"}, host_network=True)
    started = time.monotonic()
    server.wait_loading()
    assert refused(f"{server.base_url}/health"), "something answered while the model was loading"
    server.wait_ready()
    assert time.monotonic() - started >= 2.0, "ready before the 3 s load could have finished"
    response = httpx.get(f"{server.base_url}/health", timeout=5)
    assert response.status_code == 200
    assert response.content == b""


def test_published_port_gives_no_http_answer_while_loading(launcher: Launcher) -> None:
    # docker-proxy accepts the connection and then drops it: for a client "reset" or "closed
    # without a response" means "still loading", just like "refused".
    server = launcher.start({"FAKEVLLM_LOAD_SECONDS": "3"})
    server.wait_loading()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/health", timeout=2)
    server.wait_ready()


def test_models_lists_the_served_name(ready: Fakevllm) -> None:
    response = httpx.get(f"{ready.base_url}/v1/models", timeout=5)
    assert response.status_code == 200
    assert [entry["id"] for entry in response.json()["data"]] == [SERVED]
    assert response.headers["X-Model"] == MODEL


def test_chat_answers_and_names_the_model(ready: Fakevllm) -> None:
    response = ready.chat()
    assert response.status_code == 200
    assert response.headers["X-Model"] == MODEL
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == SERVED
    assert "Paris" in body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] > 0


def test_errors_carry_x_model_too(ready: Fakevllm) -> None:
    response = httpx.get(f"{ready.base_url}/no/such/path", timeout=5)
    assert response.status_code == 404
    assert response.headers["X-Model"] == MODEL


def test_streamed_chat_is_server_sent_events(ready: Fakevllm) -> None:
    body = {"model": SERVED, "messages": [QUESTION], "stream": True}
    with httpx.stream("POST", f"{ready.base_url}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: ") :]) for line in events[:-1]]
    assert len(chunks) >= 3
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == "The capital of France is Paris."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_metrics_have_vllms_names(ready: Fakevllm) -> None:
    assert ready.chat().status_code == 200
    response = httpx.get(f"{ready.base_url}/metrics", timeout=5)
    assert response.status_code == 200
    text = response.text
    for name, kind in [
        ("vllm:num_requests_running", "gauge"),
        ("vllm:num_requests_waiting", "gauge"),
        ("vllm:kv_cache_usage_perc", "gauge"),
        ("vllm:e2e_request_latency_seconds", "histogram"),
        ("vllm:time_to_first_token_seconds", "histogram"),
        ("vllm:request_success_total", "counter"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text
    assert f'vllm:e2e_request_latency_seconds_bucket{{model_name="{SERVED}",le="+Inf"}}' in text
    success = [
        line
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total{") and 'finished_reason="stop"' in line
    ]
    assert len(success) == 1
    assert float(success[0].rsplit(" ", 1)[1]) >= 1


def _running(server: Fakevllm) -> float | None:
    try:
        text = httpx.get(f"{server.base_url}/metrics", timeout=2).text
    except httpx.TransportError:
        return None
    for line in text.splitlines():
        if line.startswith("vllm:num_requests_running{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(launcher: Launcher) -> None:
    server = launcher.start({"FAKEVLLM_LATENCY_MS": "3000"}, host_network=True)
    server.wait_ready()
    result: dict[str, Any] = {}

    def slow_request() -> None:
        try:
            result["response"] = server.chat()
        except httpx.HTTPError as exc:
            result["error"] = exc

    worker = threading.Thread(target=slow_request, daemon=True)
    worker.start()
    wait_for("the slow request to run", lambda: True if _running(server) == 1 else None, 10)

    server.container.kill(signal="SIGTERM")
    wait_for(
        "new connections to be refused",
        lambda: True if refused(f"{server.base_url}/health") else None,
        10,
    )
    assert worker.is_alive(), "the slow request ended before the refusal could be observed"

    worker.join(timeout=30)
    assert not worker.is_alive(), "the in-flight request did not finish"
    assert "error" not in result, result.get("error")
    assert result["response"].status_code == 200
    assert "Paris" in result["response"].json()["choices"][0]["message"]["content"]
    assert server.container.wait(timeout=30)["StatusCode"] == 0
    assert "Shutting down" in server.logs()


def test_crash_on_load_exits_non_zero_with_the_error_in_the_logs(launcher: Launcher) -> None:
    server = launcher.start({"FAKEVLLM_FAULT": "crash-on-load"})
    assert server.container.wait(timeout=30)["StatusCode"] != 0
    logs = server.logs()
    assert "Traceback" in logs
    assert "Engine core initialization failed" in logs
