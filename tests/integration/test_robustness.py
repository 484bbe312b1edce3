"""Robustness against the real testbed (issue #9): a crash still rolls back and reports, the lock holds or
the deploy stops, drain without metrics, bounded logs, a damaged state.json, settings-only changes."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bgdeploy.cli import main
from tests.github_stub.server import GitHubStub
from tests.integration.conftest import REPO_ROOT, Testbed, unavailable
from tests.integration.deployments import Deployment, Traffic, failed, ok
from tests.integration.test_ci import NAME, OWNER, PR, ci, push_event, spec_with_secret, stub
from tests.integration.test_host_router import INCLUDE_DIR, SshHostRouter, host_nginx

pytestmark = pytest.mark.integration
__all__ = ["host_nginx", "stub"]  # fixtures of test_host_router and test_ci, used here too


def in_process(dep: Deployment, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run the CLI in this process (so a test can plant a bug in it), with the testbed's key."""
    monkeypatch.setenv("BGDEPLOY_SSH_KEY_FILE", dep.testbed.key_file)
    monkeypatch.delenv("BGDEPLOY_SSH_KEY", raising=False)
    return main([*args, "-f", str(dep.spec_path)])


def test_a_crash_after_the_switch_rolls_back_and_still_reports(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2")

    monkeypatch.setenv("BGDEPLOY_FAILPOINTS", "before:smoke=crash")  # a RuntimeError after the switch
    report, result = tmp_path / "report.md", tmp_path / "result.json"
    code = in_process(dep, monkeypatch, "deploy", "--report", str(report), "--json", str(result))
    err = capsys.readouterr().err
    assert code == 3, err
    assert "internal error: RuntimeError: failpoint before:smoke: planted bug" in err
    assert "rollback: sending all traffic back to blue" in err
    assert dep.serving_model() == "acme/chat-v1"
    assert dep.container_status("green") == "absent", "the crashed deploy's green is removed"
    data = json.loads(result.read_text())
    assert data["outcome"] == "failed" and "planted bug" in data["failure"]
    assert "planted bug" in report.read_text()
    assert not (dep.state_dir() / "lock").exists(), "the lock is released"
    history = (dep.state_dir() / "history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["outcome"] == "failed"


def test_host_writes_are_fsynced_before_the_rename(dep: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    import paramiko

    from bgdeploy.spec import load_spec
    from bgdeploy.transports.connect import open_host

    sent: list[object] = []
    original = paramiko.SFTPClient._request

    def spy(self: Any, kind: int, *args: Any) -> Any:
        sent.extend(args[:1])
        return original(self, kind, *args)

    monkeypatch.setattr(paramiko.SFTPClient, "_request", spy)
    monkeypatch.setenv("BGDEPLOY_SSH_KEY_FILE", dep.testbed.key_file)
    loaded = load_spec(str(dep.write()))
    host = open_host(loaded.spec.target, dep.workdir)
    try:
        path = f"{host.home()}/.bgdeploy/{dep.name}/fsync-probe"
        host.write_file(path, b"durable\n")
        assert host.read_file(path) == b"durable\n"
    finally:
        host.close()
    assert "fsync@openssh.com" in sent, "the file is flushed to disk (sshd's fsync extension) before the rename"
    assert sent.index("fsync@openssh.com") < sent.index("posix-rename@openssh.com")


def test_a_damaged_state_file_is_a_clear_error_and_status_still_works(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    state = dep.state_dir() / "state.json"
    good = state.read_text()
    dep.host_write(state, good.replace('"since": "', '"weights": {"blue": Infinity}, "x": "', 1))
    dep.write("acme/chat-v2")
    out = failed(dep.run("deploy"))
    assert "Infinity is not a JSON number" in out and f"mv {state} {state}.damaged" in out
    assert dep.serving_model() == "acme/chat-v1", "nothing was changed"
    # status still works: it shows what runs and names the damage (exit 1 only if the router looks broken, e.g.
    # a health probe that timed out on a loaded machine; never a crash).
    done = dep.run("status")
    shown = done.stdout + done.stderr
    assert done.returncode in (0, 1) and "Traceback" not in shown, shown
    assert "blue: running" in shown and "acme/chat-v1" in shown and "state.json is damaged" in shown, shown
    state.rename(state.with_suffix(".json.damaged"))  # the repair the message names
    ok(dep.run("deploy"))
    assert dep.serving_model() == "acme/chat-v2"


def _start_slow_deploy(dep: Deployment, load_seconds: int) -> Any:
    """Deploy v1, then start a v2 that loads slowly; returns the running deploy once green is loading."""
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2", env={"FAKEVLLM_LOAD_SECONDS": str(load_seconds)})
    proc = dep.start("deploy")
    dep.wait_for(lambda: dep.container_status("green") == "running", 60, "green to start loading")
    return proc


def test_a_heartbeat_outage_is_retried_and_the_deploy_goes_on(dep: Deployment) -> None:
    proc = _start_slow_deploy(dep, load_seconds=20)
    state_dir = dep.state_dir()
    try:
        state_dir.chmod(0o555)  # the lock's directory refuses writes: the heartbeat fails
        # The outage spans at least one heartbeat (every 5 s) and stays well below KEEP_FOR (20 s).
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        state_dir.chmod(0o755)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "the lock's heartbeat failed" in out and "was retried" in out, out
    assert dep.serving_model() == "acme/chat-v2"


def test_a_lock_that_cannot_be_kept_rolls_the_deploy_back(dep: Deployment) -> None:
    proc = _start_slow_deploy(dep, load_seconds=90)
    state_dir = dep.state_dir()
    try:
        state_dir.chmod(0o555)  # for good: the heartbeat can never be written again
        out, _ = proc.communicate(timeout=120)
    finally:
        state_dir.chmod(0o755)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out
    assert "the deploy lock could not be kept" in out and "rollback: removing green" in out, out
    assert "Last log lines" not in out, "a lost lock is not blamed on the container"
    assert dep.container_status("green") == "absent"
    assert dep.serving_model() == "acme/chat-v1"


def test_the_access_log_is_bounded_by_every_command_not_only_by_deploys_that_move_traffic(dep: Deployment) -> None:
    dep.write("acme/chat-v1", router={"access_log_max": "4k"})
    ok(dep.run("deploy"))
    log = dep.state_dir() / "router" / "logs" / "access.log"
    deadline = time.monotonic() + 60
    while (not log.exists() or log.stat().st_size <= 4096) and time.monotonic() < deadline:
        assert dep.chat().status_code == 200
    assert log.stat().st_size > 4096
    out = ok(dep.run("deploy"))  # unchanged: no traffic moves, the log is still rotated
    assert "Unchanged" in out and "router: rotated the access log" in out, out
    assert log.with_name("access.log.1").stat().st_size > 4096
    before = log.stat().st_size if log.exists() else 0
    assert before < 4096
    dep.chat()
    dep.wait_for(lambda: log.exists() and log.stat().st_size > before, 30, "nginx to log into the reopened file")


def test_settings_that_do_not_change_the_container_do_not_reload_the_model(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    blue = dep.docker.containers.get(f"bgdeploy-{dep.name}-blue")
    spec = dep.spec("acme/chat-v1")
    spec["rollout"]["bake"] = "500ms"
    spec["target"]["connect_timeout"] = "20s"
    dep.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    planned = ok(dep.run("plan"))
    assert "change: settings only: rollout.bake, target.connect_timeout -> applied without reloading" in planned
    out = ok(dep.run("deploy"))
    assert "settings only: rollout.bake, target.connect_timeout changed; applied without reloading the model" in out
    assert dep.container_status("green") == "absent", "no new colour was loaded"
    assert (
        dep.docker.containers.get(f"bgdeploy-{dep.name}-blue").attrs["State"]["StartedAt"]
        == blue.attrs["State"]["StartedAt"]
    ), "the live container was not restarted"
    again = ok(dep.run("plan"))
    assert "settings only" not in again and "change:" not in again, again


FAKEVLLM = REPO_ROOT / "tests" / "fakevllm" / "fakevllm.py"


def test_drain_without_vllm_metrics_waits_for_the_routers_open_stream(dep: Deployment) -> None:
    drain_keeps_the_stream(dep)


def test_drain_without_vllm_metrics_in_host_mode(
    testbed: Testbed, docker_client: Any, tmp_path: Path, host_nginx: None
) -> None:
    if not INCLUDE_DIR.is_dir():
        unavailable(f"{INCLUDE_DIR} is missing: run scripts/testbed up")
    dep = SshHostRouter(testbed, tmp_path, docker_client)
    try:
        drain_keeps_the_stream(dep)
    finally:
        dep.cleanup()


def drain_keeps_the_stream(dep: Deployment) -> None:
    # A server without /metrics that aborts what is in flight on SIGTERM (no drain of its own): only bgdeploy's
    # drain, from the router's open connections, can keep the stream alive. This file's fakevllm is mounted,
    # so the test does not depend on the image's age.
    env = {"FAKEVLLM_METRICS": "off", "FAKEVLLM_DRAIN_SECONDS": "0", "FAKEVLLM_STREAM_DELAY_MS": "1500"}
    extra: dict[str, Any] = {
        "runtime": {"volumes": [f"{FAKEVLLM}:/opt/fakevllm/fakevllm.py:ro"]},
        "rollout": {"smoke": [], "bake": 0, "drain_timeout": "60s"},
        "validation": {"prompts": []},  # the switch comes seconds after the deploy starts, mid-stream
    }
    dep.write("acme/chat-v1", env=env, **extra)
    ok(dep.run("deploy"))
    blue = dep.docker.containers.get(f"bgdeploy-{dep.name}-blue")
    blue_port = int(blue.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"])
    first_chunk = threading.Event()
    stream: dict[str, Any] = {}

    def long_stream() -> None:
        body = {"model": "chat", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
        try:
            url = f"{dep.url}/v1/chat/completions"
            with httpx.stream("POST", url, json={**body, "stream": True}, timeout=120) as r:
                stream["colour"] = r.headers.get("x-bgdeploy-colour")
                chunks = []
                for chunk in r.iter_text():
                    chunks.append(chunk)
                    first_chunk.set()
                stream["text"] = "".join(chunks)
                stream["status"] = r.status_code
        except httpx.HTTPError as exc:
            stream["error"] = repr(exc)
        finally:
            stream["ended"] = time.monotonic()
            first_chunk.set()

    # A scraper's idle keep-alive connection to blue's published port: it must not hold the drain up.
    with socket.create_connection(("127.0.0.1", blue_port), timeout=10):
        thread = threading.Thread(target=long_stream, daemon=True)
        thread.start()
        assert first_chunk.wait(60), "the stream started"
        dep.write("acme/chat-v2", env=env, **extra)
        started = time.monotonic()
        out = ok(dep.run("deploy"))
        finished = time.monotonic()
        thread.join(timeout=120)
    assert stream.get("colour") == "blue" and "error" not in stream, stream
    assert stream["status"] == 200 and stream["text"].rstrip().endswith("data: [DONE]"), stream
    assert "drain: blue has no request in flight (requests open through the router)" in out, out
    assert "waiting is not possible" not in out
    assert stream["ended"] - started > 4, "the stream was still running on blue when the switch happened"
    assert stream["ended"] <= finished, "blue was stopped only after its last stream ended"
    assert "still had" not in out, "the drain ended with the stream, not at drain_timeout (the scraper is ignored)"


def test_a_crash_in_the_action_still_reports_everywhere_and_exits_3(dep: Deployment, stub: GitHubStub) -> None:
    payload = push_event()
    stub.set_commit_pulls(payload["after"], [PR])
    spec_with_secret(dep, "acme/chat-v1")
    assert ci(dep, stub, "push", payload).code == 0
    spec_with_secret(dep, "acme/chat-v2")
    run = ci(dep, stub, "push", payload, BGDEPLOY_FAILPOINTS="before:smoke=crash")  # a bug after the switch
    assert run.code == 3, run.log
    assert run.outputs["outcome"] == "failed" and run.outputs["active-color"] == "blue", run.outputs
    assert "planted bug" in run.summary
    latest = stub.deployments()[-1]
    assert stub.statuses(int(str(latest["id"])))[-1]["state"] == "failure"
    assert "planted bug" in str(stub.comments(OWNER, NAME, PR)[0]["body"])
    assert dep.serving_model() == "acme/chat-v1" and dep.container_status("green") == "absent"


def test_a_release_that_answers_401_to_every_client_is_rolled_back(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    # v2 suddenly wants an API key: validation sends it (and passes), the clients do not (401 for all of them).
    monkeypatch.setenv("VLLM_API_KEY", "k-" + "x" * 20)
    dep.write(
        "acme/chat-v2",
        runtime={"secret_env": ["VLLM_API_KEY"], "api_key_env": "VLLM_API_KEY"},
        rollout={"smoke": [], "bake": "6s", "analysis_interval": "1s", "rollback_on": {"min_requests": 5}},
    )
    report = dep.workdir / "report.md"
    with Traffic(dep.url):
        out = failed(dep.run("deploy", "--report", str(report)))
    assert "live traffic breached rollout.rollback_on: error rate 100%" in out, out
    assert re.search(r"errors \(100%\) \(401×\d+\)", report.read_text()), report.read_text()
    assert dep.serving_model() == "acme/chat-v1"
