"""fakevllm's knobs and faults, run directly on the host (no Docker needed): fast and exact."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

FAKEVLLM = Path(__file__).resolve().parents[1] / "fakevllm" / "fakevllm.py"
MODEL = "org/model-v2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    def __init__(self, popen: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.popen = popen
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"fakevllm exited {self.popen.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"fakevllm not ready within {timeout} s:\n{self.output()}")

    def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=10)

    def chat(self, content: str, **extra: Any) -> httpx.Response:
        body = {"messages": [{"role": "user", "content": content}], **extra}
        return self.post("/v1/chat/completions", body)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def launch(*args: str, **env: str) -> Proc:
        port = free_port()
        log = tmp_path / f"fakevllm-{len(procs)}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("FAKEVLLM_", "VLLM_"))}
        environ.update({"FAKEVLLM_LOAD_SECONDS": "0", **env})
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    str(FAKEVLLM),
                    "--model",
                    MODEL,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
            )
        proc = Proc(popen, port, log)
        procs.append(proc)
        return proc

    yield launch
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=10)


def test_unknown_vllm_flags_are_logged_and_ignored(start: Callable[..., Proc]) -> None:
    proc = start("--tensor-parallel-size", "2", "--enable-prefix-caching")
    proc.wait_ready()
    assert "ignoring vLLM flag --tensor-parallel-size 2" in proc.output()
    assert "ignoring vLLM flag --enable-prefix-caching" in proc.output()


def test_api_key_guards_v1_only(start: Callable[..., Proc]) -> None:
    proc = start("--api-key", "s3cret")
    proc.wait_ready()
    assert httpx.get(f"{proc.url}/v1/models", timeout=5).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.get(f"{proc.url}/v1/models", headers=wrong, timeout=5).status_code == 401
    right = {"Authorization": "Bearer s3cret"}
    assert httpx.get(f"{proc.url}/v1/models", headers=right, timeout=5).status_code == 200
    assert httpx.get(f"{proc.url}/metrics", timeout=5).status_code == 200


def test_api_key_from_environment(start: Callable[..., Proc]) -> None:
    proc = start(VLLM_API_KEY="from-env")
    proc.wait_ready()
    assert proc.chat("hi").status_code == 401
    assert proc.chat("hi").headers["X-Model"] == MODEL


def test_completions_honour_max_tokens(start: Callable[..., Proc]) -> None:
    proc = start()
    proc.wait_ready()
    full = proc.post("/v1/completions", {"prompt": "What is the capital of Kenya?"}).json()
    assert full["choices"][0]["text"] == "The capital of Kenya is Nairobi."
    assert full["choices"][0]["finish_reason"] == "stop"
    cut = proc.post("/v1/completions", {"prompt": "What is the capital of Kenya?", "max_tokens": 2})
    assert cut.json()["choices"][0]["text"] == "The capital"
    assert cut.json()["choices"][0]["finish_reason"] == "length"


def test_unknown_model_name_is_404(start: Callable[..., Proc]) -> None:
    proc = start("--served-model-name", "chat")
    proc.wait_ready()
    assert proc.chat("hi", model="chat").status_code == 200
    response = proc.chat("hi", model="other")
    assert response.status_code == 404
    assert "does not exist" in response.json()["error"]["message"]


def test_error_rate_fails_exactly_every_nth_request(start: Callable[..., Proc]) -> None:
    proc = start(FAKEVLLM_ERROR_RATE="0.25")
    proc.wait_ready()
    statuses = [proc.chat("What is 2+2?").status_code for _ in range(8)]
    assert statuses == [200, 200, 200, 500, 200, 200, 200, 500]
    assert proc.chat("x").status_code == 200  # the 9th


def test_wrong_answers_fault(start: Callable[..., Proc]) -> None:
    proc = start(FAKEVLLM_FAULT="wrong-answers")
    proc.wait_ready()
    content = proc.chat("What is the capital of France?").json()["choices"][0]["message"]["content"]
    assert "Paris" not in content


def test_die_after_fault_exits_abruptly(start: Callable[..., Proc]) -> None:
    proc = start(FAKEVLLM_FAULT="die-after:2")
    proc.wait_ready()
    assert proc.chat("hi").status_code == 200
    assert proc.chat("hi").status_code == 200
    assert proc.popen.wait(timeout=10) == 137
    with pytest.raises(httpx.ConnectError):
        proc.chat("hi")


def test_never_ready_never_listens(start: Callable[..., Proc]) -> None:
    proc = start(FAKEVLLM_FAULT="never-ready")
    deadline = time.monotonic() + 10
    while "100% Completed" not in proc.output():
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.05)
    assert proc.popen.poll() is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{proc.url}/health", timeout=2)
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(timeout=10) == 0


def test_streamed_completion_with_usage(start: Callable[..., Proc]) -> None:
    proc = start()
    proc.wait_ready()
    body = {"prompt": "What is 6 * 7?", "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{proc.url}/v1/completions", json=body, timeout=10) as response:
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "The answer is 42."
    assert chunks[-1]["usage"]["completion_tokens"] == 4


def test_sigterm_drains_then_exits_zero(start: Callable[..., Proc]) -> None:
    proc = start(FAKEVLLM_STREAM_DELAY_MS="300")
    proc.wait_ready()
    body = {
        "messages": [{"role": "user", "content": "What is the capital of Egypt?"}],
        "stream": True,
    }
    with httpx.stream("POST", f"{proc.url}/v1/chat/completions", json=body, timeout=10) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line)
        proc.popen.send_signal(signal.SIGTERM)
        rest = [line for line in lines if line]
    assert first.startswith("data: ")
    assert rest[-1] == "data: [DONE]"
    assert proc.popen.wait(timeout=10) == 0
    assert "Shutting down" in proc.output()
