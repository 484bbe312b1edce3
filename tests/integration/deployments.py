"""A deployment under test: writes its bluegreen.yaml for the testbed, runs the real CLI as a user would,
talks to its router on loopback, and cleans everything up afterwards (containers, network, host state)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.integration.conftest import REPO_ROOT, Testbed

PROMPTS = [
    {"name": "capital", "chat": "What is the capital of France?", "expect": {"contains": "Paris"}},
    {"name": "sum", "chat": "What is 2+2?", "expect": {"regex": r"\b4\b"}},
]


def ok(done: Any) -> str:
    """The output of a command that must have succeeded (exit 0), or a failure showing all of it."""
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return str(done.stdout + done.stderr)


def failed(done: Any) -> str:
    """The output of a command that must have failed as a deploy fails (exit 1)."""
    assert done.returncode == 1, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return str(done.stdout + done.stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass
class Deployment:
    testbed: Testbed
    workdir: Path
    docker: Any
    name: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:8])
    port: int = field(default_factory=free_port)

    @property
    def spec_path(self) -> Path:
        return self.workdir / "bluegreen.yaml"

    def spec(self, model: str = "acme/chat-v1", env: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "version": 1,
            "name": self.name,
            "target": {
                "host": self.testbed.host,
                "port": self.testbed.port,
                "user": self.testbed.user,
                "host_key": self.testbed.host_key,
            },
            "model": {"name": model, "served_name": "chat"},
            "runtime": {
                "image": self.testbed.fakevllm_image,
                "env": {"FAKEVLLM_LOAD_SECONDS": "1", **(env or {})},
            },
            "gpus": {"blue": [], "green": []},
            "router": {"image": self.testbed.nginx_image, "listen": self.port, "bind": "127.0.0.1"},
            "health": {"interval": "250ms", "ready_timeout": "60s"},
            "validation": {"concurrency": 2, "prompts": PROMPTS},
            "rollout": {"smoke": ["capital"], "bake": 0, "drain_timeout": "10s"},
        }
        return merge(base, extra)

    def write(self, model: str = "acme/chat-v1", env: dict[str, str] | None = None, **extra: Any) -> Path:
        self.spec_path.write_text(yaml.safe_dump(self.spec(model, env, **extra), sort_keys=False))
        return self.spec_path

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
        env["BGDEPLOY_SSH_KEY_FILE"] = self.testbed.key_file
        env.pop("BGDEPLOY_SSH_KEY", None)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bgdeploy", *args, "-f", str(self.spec_path)]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run the CLI the way a user does; its output is kept for the assertion messages."""
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environ(),
            cwd=REPO_ROOT,
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.environ(),
            cwd=REPO_ROOT,
        )

    # -- what a client sees -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def chat(self, text: str = "What is the capital of France?", timeout: float = 30) -> httpx.Response:
        body = {"model": "chat", "messages": [{"role": "user", "content": text}], "max_tokens": 32}
        return httpx.post(f"{self.url}/v1/chat/completions", json=body, timeout=timeout)

    def serving_model(self) -> str:
        return self.chat().headers.get("x-model", "")

    def container_status(self, colour: str) -> str:
        try:
            container = self.docker.containers.get(f"bgdeploy-{self.name}-{colour}")
        except Exception:
            return "absent"
        return str(container.status)

    def wait_for(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.1)

    def interrupt_while_loading(self, interrupt: Any, env: dict[str, str] | None = None) -> tuple[int, str]:
        """Deploy v1, then start deploying a slow-loading v2 and `interrupt(process)` once green is loading.

        Returns the interrupted deploy's exit code and output. Never leaves the process running.
        """
        self.write("acme/chat-v1")
        ok(self.run("deploy"))
        self.write("acme/chat-v2", env={"FAKEVLLM_LOAD_SECONDS": "30", **(env or {})})
        proc = self.start("deploy")
        try:
            self.wait_for(lambda: self.container_status("green") == "running", 60, "green to start loading")
            interrupt(proc)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        return proc.returncode, out

    def state_dir(self) -> Path:
        return Path(f"/home/{self.testbed.user}/.bgdeploy/{self.name}")

    def host_write(self, path: Path, text: str) -> None:
        """Write a file on the host as the SSH user would own it (the tests run as root)."""
        missing = [p for p in reversed(path.parents) if not p.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        for created in [*missing, path]:
            shutil.chown(created, self.testbed.user, self.testbed.user)

    def cleanup(self) -> None:
        for container in self.docker.containers.list(all=True, filters={"label": f"dev.bgdeploy.name={self.name}"}):
            container.remove(force=True)
        for network in self.docker.networks.list(names=[f"bgdeploy-{self.name}"]):
            network.remove()
        shutil.rmtree(self.state_dir(), ignore_errors=True)


# A request sent on a keep-alive connection that nginx closed at that moment fails "without sending a response"
# before any server saw it; clients (OpenAI's SDK: max_retries=2) send it again. Retried at most this often.
KEEPALIVE_RACE = "without sending a response"
KEEPALIVE_RETRIES = 2


class Traffic:
    """Steady client traffic through the router (plain and streaming chats) in a background thread.

    Counts what a user would notice: failed requests, and which model answered. Bounded in time.
    """

    def __init__(self, url: str, max_seconds: float = 240) -> None:
        self.url = url
        self.sent = 0
        self.retried = 0  # keep-alive races retried, as a real client does (at most KEEPALIVE_RETRIES each)
        self.failures: list[str] = []
        self.models: list[str] = []
        self.answers: list[tuple[float, str]] = []  # (when the request was sent, the model that answered)
        self._stop = threading.Event()
        self._max = max_seconds
        self._threads = [threading.Thread(target=self._loop, args=(stream,), daemon=True) for stream in (False, True)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _loop(self, stream: bool) -> None:
        deadline = time.monotonic() + self._max
        body = {
            "model": "chat",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 32,
            "stream": stream,
        }
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                self.sent += 1
                sent_at = time.monotonic()
                for attempt in range(KEEPALIVE_RETRIES + 1):
                    try:
                        self._one(client, body, stream, sent_at)
                    except httpx.RemoteProtocolError as exc:
                        # nginx closing an idle keep-alive connection (a reload's old worker) at the moment the
                        # client reuses it: nothing reached a model, and OpenAI's SDK retries this by itself.
                        if KEEPALIVE_RACE in str(exc) and attempt < KEEPALIVE_RETRIES:
                            self.retried += 1
                            continue
                        self.failures.append(f"{'stream' if stream else 'plain'}: {type(exc).__name__}: {exc}")
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{'stream' if stream else 'plain'}: {type(exc).__name__}: {exc}")
                    break
                time.sleep(0.02)

    def _one(self, client: httpx.Client, body: dict[str, Any], stream: bool, sent_at: float) -> None:
        label = "stream" if stream else "plain"
        with client.stream("POST", f"{self.url}/v1/chat/completions", json=body) as response:
            text = "".join(response.iter_text())
            if response.status_code != 200:
                self.failures.append(f"{label}: HTTP {response.status_code}: {text[:200]}")
                return
            if stream and not text.rstrip().endswith("data: [DONE]"):
                self.failures.append(f"stream: cut short: {text[-200:]!r}")
                return
            if "Paris" not in text:
                self.failures.append(f"{label}: wrong answer {text[:200]!r}")
                return
            model = response.headers.get("x-model", "?")
            self.models.append(model)
            self.answers.append((sent_at, model))

    def models_sent(self, after: float = 0.0, before: float = float("inf")) -> set[str]:
        """Which models answered the requests sent in that window."""
        return {model for sent_at, model in self.answers if after <= sent_at < before}


def switched(traffic: Traffic, run: Any, before: str, after: str, since: float = 0.0) -> float:
    """Run a deploy or rollback under traffic: requests sent between `since` and its start met `before`,
    and every request sent once it returned met `after` (in between, both may answer: old workers finish
    theirs). Returns when it returned, the `since` of the next switch."""
    started = time.monotonic()
    result = run()
    finished = time.monotonic()
    seen = len(traffic.answers)
    deadline = time.monotonic() + 30
    while len(traffic.answers) < seen + 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert traffic.models_sent(after=since, before=started) == {before}, traffic.answers[-20:]
    assert traffic.models_sent(after=finished) == {after}, traffic.answers[-20:]
    del result
    return finished
