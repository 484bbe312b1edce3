"""Robustness against the real testbed (issue #9): a crash still rolls back and reports, the lock holds or
the deploy stops, drain without metrics, bounded logs, a damaged state.json, settings-only changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bgdeploy.cli import main
from tests.integration.deployments import Deployment, ok

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
