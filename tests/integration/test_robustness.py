"""Robustness against the real testbed (issue #9): a crash still rolls back and reports, the lock holds or
the deploy stops, drain without metrics, bounded logs, a damaged state.json, settings-only changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bgdeploy.cli import main
from tests.integration.deployments import Deployment, failed, ok

pytestmark = pytest.mark.integration


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

    def bug(self: Any) -> None:
        raise RuntimeError("planted bug")

    monkeypatch.setattr("bgdeploy.execute.deploy.Cycle.step_smoke", bug)
    report, result = tmp_path / "report.md", tmp_path / "result.json"
    code = in_process(dep, monkeypatch, "deploy", "--report", str(report), "--json", str(result))
    err = capsys.readouterr().err
    assert code == 3, err
    assert "internal error: RuntimeError: planted bug" in err and "rollback: sending all traffic back to blue" in err
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
    shown = ok(dep.run("status"))
    assert "blue: running, healthy: acme/chat-v1" in shown and "state.json is damaged" in shown
    state.rename(state.with_suffix(".json.damaged"))  # the repair the message names
    ok(dep.run("deploy"))
    assert dep.serving_model() == "acme/chat-v2"
