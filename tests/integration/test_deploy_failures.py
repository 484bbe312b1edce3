"""Locks, interrupted deploys, preflight refusals and bad router configs, against the real testbed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.deployments import Deployment, failed, ok

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvidia-smi" / "h200"
NVIDIA_SMI = Path("/usr/local/bin/nvidia-smi")


def write_lock(dep: Deployment, heartbeat: float, owner: str = "alice on ci-runner pid 42") -> Path:
    path = dep.state_dir() / "lock"
    body = {"owner": owner, "started": "2026-11-26T00:00:00Z", "heartbeat": heartbeat, "token": "abc"}
    dep.host_write(path, json.dumps(body))
    return path


def test_a_held_lock_refuses_naming_the_holder_then_force_unlock(dep: Deployment) -> None:
    dep.write()
    write_lock(dep, heartbeat=time.time() + 3600)  # a live holder, for the length of this test
    out = failed(dep.run("deploy"))
    assert "another deploy of this name is running: alice on ci-runner pid 42" in out
    assert dep.container_status("blue") == "absent", "nothing starts without the lock"
    waited = failed(dep.run("deploy", "--lock-wait", "2"))
    assert "alice on ci-runner" in waited
    out = ok(dep.run("deploy", "--force-unlock"))
    assert "removed the lock held by alice on ci-runner pid 42" in out
    assert not (dep.state_dir() / "lock").exists(), "the lock is released at the end"


def test_a_stale_lock_is_taken_over_with_a_warning(dep: Deployment) -> None:
    dep.write()
    write_lock(dep, heartbeat=time.time() - 600)
    out = ok(dep.run("deploy"))
    assert "took over a stale lock from alice on ci-runner pid 42" in out
    assert dep.serving_model() == "acme/chat-v1"


def test_two_deploys_at_once_one_waits_for_the_other(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2", env={"FAKEVLLM_LOAD_SECONDS": "3"})
    first = dep.start("deploy")
    try:
        dep.wait_for(lambda: (dep.state_dir() / "lock").exists(), 30, "the first deploy to take the lock")
        second = dep.run("deploy", "--lock-wait", "90")
    finally:
        first.wait(timeout=120)
    assert first.returncode == 0, first.stdout.read() if first.stdout else ""
    # The second found the same spec live once the lock was free.
    assert second.returncode == 0 and "Unchanged" in second.stdout, second.stdout + second.stderr


def test_a_deploy_killed_mid_way_leaves_blue_serving_and_the_next_one_converges(dep: Deployment) -> None:
    code, _ = dep.interrupt_while_loading(lambda proc: proc.send_signal(signal.SIGKILL))
    assert code == -signal.SIGKILL
    assert dep.serving_model() == "acme/chat-v1"
    # The killed deploy left its lock and a half-loaded green; a new deploy must cope with both.
    lock = json.loads((dep.state_dir() / "lock").read_text())
    lock["heartbeat"] = time.time() - 600  # as if STALE_AFTER had passed, without waiting for it
    dep.host_write(dep.state_dir() / "lock", json.dumps(lock))
    dep.write("acme/chat-v2", env={"FAKEVLLM_LOAD_SECONDS": "1"})
    out = ok(dep.run("deploy"))
    assert "took over a stale lock" in out and "removing the leftover green container" in out
    assert dep.serving_model() == "acme/chat-v2"


def test_sigterm_during_a_deploy_rolls_back_cleanly(dep: Deployment) -> None:
    code, out = dep.interrupt_while_loading(lambda proc: proc.send_signal(signal.SIGTERM))
    assert code == 1, out
    assert "interrupted" in out and "rollback: removing green" in out
    assert dep.container_status("green") == "absent"
    assert dep.serving_model() == "acme/chat-v1"
    assert not (dep.state_dir() / "lock").exists()


@pytest.fixture
def fake_nvidia_smi() -> Iterator[Any]:
    """A stand-in nvidia-smi on the host's PATH that prints a captured H200 output (real text)."""
    if NVIDIA_SMI.exists():
        pytest.skip(f"{NVIDIA_SMI} exists on this machine; not replacing a real one")

    def install(fixture: str, exit_code: int = 0) -> None:
        text = (FIXTURES / fixture).read_text().split("\nrc=")[0]
        NVIDIA_SMI.write_text(f"#!/bin/sh\ncat <<'EOF'\n{text.rstrip()}\nEOF\nexit {exit_code}\n")
        NVIDIA_SMI.chmod(0o755)

    yield install
    NVIDIA_SMI.unlink(missing_ok=True)


def test_preflight_refuses_when_green_does_not_fit_or_its_gpu_is_missing(dep: Deployment, fake_nvidia_smi: Any) -> None:
    fake_nvidia_smi("query-gpu-split.csv")  # two colours already hold 0.45 each: 13262 MiB free
    dep.write("acme/chat-v1", gpus={"blue": [0], "green": [0]})
    plan = failed(dep.run("plan"))
    assert "blocker: GPU 0 (NVIDIA H200): blue needs 0.45 × 143157 MiB" in plan and "13262 MiB are free" in plan
    out = failed(dep.run("deploy"))
    assert "preflight refused the deploy, nothing was changed" in out
    assert dep.container_status("blue") == "absent"

    fake_nvidia_smi("query-gpu-by-uuid.txt")  # an idle one-GPU host
    dep.write("acme/chat-v1", gpus={"blue": [3], "green": [3]})
    out = failed(dep.run("deploy"))
    assert "blue wants GPU 3, but the host has GPU 0 only" in out
    assert dep.container_status("blue") == "absent"


def test_preflight_reports_a_broken_nvidia_smi(dep: Deployment, fake_nvidia_smi: Any) -> None:
    fake_nvidia_smi("query-gpu-missing-index.txt", exit_code=6)
    dep.write("acme/chat-v1", gpus={"blue": [0], "green": [0]})
    out = failed(dep.run("deploy"))
    assert "No devices were found" in out
    assert dep.container_status("blue") == "absent"


def test_wrong_host_key_and_missing_private_key_are_clear_errors(dep: Deployment) -> None:
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfGRy7nL8mj9zCsOYvIaPeU/TV/uHS4zQUvQVaNO2Uf"
    dep.write(target={"host_key": other})
    out = failed(dep.run("deploy"))
    assert "does not match the pinned key" in out and "Traceback" not in out
    dep.write()
    env = dep.environ()
    env.pop("BGDEPLOY_SSH_KEY_FILE")
    import subprocess

    done = subprocess.run(dep.command("deploy"), env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "no SSH private key" in done.stderr
    assert os.environ.get("BGDEPLOY_SSH_KEY", "") not in done.stderr or not os.environ.get("BGDEPLOY_SSH_KEY")


def test_preflight_refuses_a_router_port_that_is_taken(dep: Deployment) -> None:
    import socket

    dep.write("acme/chat-v1")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", dep.port))
        squatter.listen(1)
        out = failed(dep.run("deploy"))
    assert f"router.listen 127.0.0.1:{dep.port} is already in use on the host" in out
    assert dep.container_status("blue") == "absent"


def test_a_lost_ssh_connection_is_a_clear_failure_and_the_next_deploy_converges(dep: Deployment) -> None:
    # Drop the deploy's connection from the server side, as a network failure would.
    code, out = dep.interrupt_while_loading(
        lambda _: subprocess.run(["pkill", "-f", f"sshd: {dep.testbed.user}"], check=False, timeout=10)
    )
    assert code == 1, out
    assert "Deploy failed: blue still serves. the SSH connection to" in out and "Traceback" not in out, out
    assert dep.serving_model() == "acme/chat-v1"
    dep.write("acme/chat-v2", env={"FAKEVLLM_LOAD_SECONDS": "1"})
    again = ok(dep.run("deploy", "--force-unlock"))  # the lost deploy could not release its lock
    assert "removing the leftover green container" in again
    assert dep.serving_model() == "acme/chat-v2"
