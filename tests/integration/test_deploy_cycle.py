"""The blue-green cycle against the testbed's real sshd, dockerd and nginx, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.deployments import Deployment, Traffic, failed, ok, switched

pytestmark = pytest.mark.integration


def test_first_deploy_switch_unchanged_and_rollback_from_stopped_and_running(dep: Deployment, tmp_path: Path) -> None:
    dep.write("acme/chat-v1")
    out = ok(dep.run("deploy"))
    assert "Deployed: blue now serves acme/chat-v1" in out
    assert dep.serving_model() == "acme/chat-v1"
    assert dep.chat().headers["x-bgdeploy-colour"] == "blue"

    dep.write("acme/chat-v2")
    plan = ok(dep.run("plan"))
    assert "live: blue: acme/chat-v1" in plan and "change: model: acme/chat-v1 -> acme/chat-v2" in plan
    assert dep.serving_model() == "acme/chat-v1", "plan must change nothing"

    report = tmp_path / "report.md"
    result = tmp_path / "result.json"
    ok(dep.run("deploy", "--report", str(report), "--json", str(result)))
    assert dep.serving_model() == "acme/chat-v2"
    assert dep.container_status("blue") == "exited", "keep_previous: stopped keeps blue, stopped"
    data = json.loads(result.read_text())
    assert data["outcome"] == "deployed" and data["active_colour"] == "green" and data["previous_colour"] == "blue"
    assert [r["name"] for r in data["validation"]["results"]] == ["capital", "sum"]
    assert data["live_validation"] is not None, "compare_with_live asks blue too"
    text = report.read_text()
    assert "✅ **Deployed**" in text and "| capital | ✅ pass |" in text and "| wait-ready |" in text

    again = ok(dep.run("deploy"))
    assert "Unchanged" in again

    ok(dep.run("rollback"))  # blue was stopped: started, health-checked, then routed to
    assert dep.serving_model() == "acme/chat-v1"
    assert dep.container_status("green") == "exited"
    ok(dep.run("rollback"))  # and back again
    assert dep.serving_model() == "acme/chat-v2"

    status = json.loads(ok(dep.run("status", "--json")).split("\n[", 1)[0])
    assert status["live"]["colour"] == "green" and status["live"]["model"] == "acme/chat-v2"
    assert status["colours"]["green"]["health"] == "healthy"
    assert [h["outcome"] for h in status["history"]] == ["deployed", "deployed", "rolled-back", "rolled-back"]


def test_rollback_from_a_hot_standby_and_refusal_when_nothing_is_left(dep: Deployment) -> None:
    dep.write("acme/chat-v1", rollout={"keep_previous": "running"})
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2", rollout={"keep_previous": "running"})
    ok(dep.run("deploy"))
    assert dep.container_status("blue") == "running"
    out = ok(dep.run("rollback"))
    assert "starting the stopped" not in out, "a running standby is switched to at once"
    assert dep.serving_model() == "acme/chat-v1"

    dep.write("acme/chat-v3", rollout={"keep_previous": "removed"})
    ok(dep.run("deploy"))
    assert dep.container_status("blue") == "absent"
    refused = failed(dep.run("rollback"))
    assert "nothing to roll back to" in refused
    assert dep.serving_model() == "acme/chat-v3"


@pytest.mark.parametrize(
    ("env", "extra", "message"),
    [
        ({"FAKEVLLM_FAULT": "crash-on-load"}, {}, "failed while loading"),
        ({"FAKEVLLM_FAULT": "never-ready"}, {"health": {"ready_timeout": "4s", "timeout": "1s"}}, "was not ready"),
        ({"FAKEVLLM_FAULT": "wrong-answers"}, {}, 'capital: missing "Paris"'),
        ({"FAKEVLLM_LATENCY_MS": "400"}, {"validation": {"thresholds": {"p95_latency": "150ms"}}}, "p95 latency"),
    ],
    ids=["crash-on-load", "never-ready", "wrong-answers", "thresholds-missed"],
)
def test_a_bad_green_is_refused_and_blue_keeps_serving(
    dep: Deployment, tmp_path: Path, env: dict[str, str], extra: dict[str, Any], message: str
) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2", env=env, **extra)
    report = tmp_path / "failed.md"
    out = failed(dep.run("deploy", "--report", str(report)))
    assert message in out
    assert dep.serving_model() == "acme/chat-v1"
    assert dep.container_status("green") == "absent", "the failed colour is removed"
    assert dep.container_status("blue") == "running"
    text = report.read_text()
    assert "❌ **Deploy failed**: blue still serves" in text
    if env.get("FAKEVLLM_FAULT") == "crash-on-load":
        assert "Last log lines of the failed container" in text


def test_smoke_failure_after_the_switch_rolls_back_to_blue(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    # Green answers its 2 validation prompts, then dies on the third request (the first smoke prompt).
    dep.write(
        "acme/chat-v2",
        env={"FAKEVLLM_FAULT": "die-after:2"},
        validation={"concurrency": 1, "compare_with_live": False},
        rollout={"smoke": ["capital", "sum"]},
    )
    out = failed(dep.run("deploy"))
    # Either the second smoke prompt fails, or the restart of green is seen first (by the smoke, or by the
    # switch, which never routes to a colour that is not running): all must roll back.
    assert any(
        seen in out
        for seen in ("smoke test through the router failed", "died after taking traffic", "refusing to route to green")
    )
    assert "sending all traffic back to blue" in out
    assert dep.serving_model() == "acme/chat-v1"
    assert dep.chat().headers["x-bgdeploy-colour"] == "blue"


def test_not_one_request_fails_during_deploy_and_rollback(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2", rollout={"bake": "2s"})
    with Traffic(dep.url) as traffic:
        dep.wait_for(lambda: len(traffic.models) >= 10, 30, "traffic to flow")
        done = switched(traffic, lambda: ok(dep.run("deploy")), "acme/chat-v1", "acme/chat-v2")
        switched(traffic, lambda: ok(dep.run("rollback")), "acme/chat-v2", "acme/chat-v1", since=done)
    assert traffic.failures == [], f"{len(traffic.failures)} of {traffic.sent} requests failed: {traffic.failures[:5]}"
    assert traffic.sent > 50


def test_a_failed_deploy_keeps_the_previous_release_for_rollback(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2")
    ok(dep.run("deploy"))
    # v3 needs blue's name, where v1 waits (stopped) for a rollback: it is set aside, not lost.
    dep.write("acme/chat-v3", env={"FAKEVLLM_FAULT": "wrong-answers"})
    out = failed(dep.run("deploy"))
    assert "setting the previous blue aside" in out and "restoring the previous blue" in out
    assert dep.serving_model() == "acme/chat-v2"
    assert dep.container_status("blue") == "exited"
    ok(dep.run("rollback"))
    assert dep.serving_model() == "acme/chat-v1"


def test_a_large_access_log_is_rotated_before_traffic_moves(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    for _ in range(20):  # about 250 bytes of log each
        assert dep.chat().status_code == 200
    logs = dep.state_dir() / "router" / "logs"
    assert (logs / "access.log").stat().st_size > 1024
    dep.write("acme/chat-v2", router={"access_log_max": "1k"})
    out = ok(dep.run("deploy"))
    assert "rotated the access log" in out
    assert (logs / "access.log.1").stat().st_size > 1024
    # nginx reopened its log: the smoke test of v2 went to the new file.
    assert '"colour":"green"' in (logs / "access.log").read_text()
