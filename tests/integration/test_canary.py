"""Canary rollouts on the testbed under steady client traffic: weights honoured, breaches caught and rolled
back, pauses driven from another process, and a killed canary left recoverable."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.deployments import Deployment, Traffic, failed, ok

pytestmark = pytest.mark.integration


def canary(steps: list[tuple[int, str]], **rollout: Any) -> dict[str, Any]:
    return {
        "strategy": "canary",
        "steps": [{"weight": w, "bake": b} for w, b in steps],
        "analysis_interval": "1s",
        **rollout,
    }


def result(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_a_healthy_canary_goes_10_50_100_with_no_failed_request(dep: Deployment, tmp_path: Path) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2", rollout=canary([(10, "8s"), (50, "6s")], rollback_on={"min_requests": 8}))
    out = tmp_path / "canary.json"
    with Traffic(dep.url) as traffic:
        dep.wait_for(lambda: len(traffic.models) >= 10, 30, "traffic to flow")
        ok(dep.run("deploy", "--json", str(out), "--report", str(tmp_path / "canary.md")))
    assert traffic.failures == [], traffic.failures[:5]
    assert dep.serving_model() == "acme/chat-v2"
    steps = result(out)["canary"]
    assert [(s["step"], s["weight"], s["verdict"]) for s in steps] == [(1, 10, "passed"), (2, 50, "passed")]
    # The share of requests green actually served, per step, near the weight asked (binomial spread over
    # 100-250 requests a step: ±8 points at 10%, ±15 at 50%).
    for step, tolerance in zip(steps, (0.08, 0.15), strict=True):
        total = step["new"]["requests"] + step["old"]["requests"]
        assert total >= 60, step
        share = step["new"]["requests"] / total
        assert abs(share - step["weight"] / 100) <= tolerance, (step["weight"], share, total)
    report = (tmp_path / "canary.md").read_text()
    assert "#### Canary" in report and "```mermaid" in report and "| 2 | 50% |" in report


def test_a_green_failing_5_percent_is_caught_in_the_first_step(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write(
        "acme/chat-v2",
        env={"FAKEVLLM_ERROR_RATE": "0.05"},
        rollout=canary([(10, "60s")], rollback_on={"max_error_rate": 0.01, "min_requests": 20}),
        validation={"compare_with_live": False},
    )
    with Traffic(dep.url) as traffic:
        dep.wait_for(lambda: len(traffic.models) >= 10, 30, "traffic to flow")
        out = failed(dep.run("deploy"))
        seen = len(traffic.answers)
        dep.wait_for(lambda: len(traffic.answers) > seen + 10, 30, "traffic after the rollback")
    assert "canary step 1 (10% to green) breached rollout.rollback_on" in out and "error rate" in out
    assert "sending all traffic back to blue" in out
    assert dep.serving_model() == "acme/chat-v1"
    assert dep.container_status("green") == "absent"
    # Clients saw only the errors green produced before it was caught: 1 in 20 of its ~20-40 requests.
    assert all("HTTP 500" in f for f in traffic.failures), traffic.failures
    assert 1 <= len(traffic.failures) <= 3, traffic.failures


def test_a_latency_regression_relative_to_blue_is_caught(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write(
        "acme/chat-v2",
        env={"FAKEVLLM_LATENCY_MS": "300"},
        rollout=canary([(50, "60s")], rollback_on={"max_p95_vs_live": 1.5, "min_requests": 10}),
    )
    with Traffic(dep.url) as traffic:
        dep.wait_for(lambda: len(traffic.models) >= 10, 30, "traffic to flow")
        out = failed(dep.run("deploy"))
    assert "× baseline p95" in out
    assert traffic.failures == []
    assert dep.serving_model() == "acme/chat-v1"


def test_a_paused_canary_is_promoted_then_another_is_aborted_from_other_processes(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    rollout = canary([(10, "3s"), (50, "3s")], auto_promote=False, rollback_on={"min_requests": 5})
    dep.write("acme/chat-v2", rollout=rollout)
    with Traffic(dep.url) as traffic:
        dep.wait_for(lambda: len(traffic.models) >= 10, 30, "traffic to flow")
        paused = ok(dep.run("deploy"))
        assert "Canary paused" in paused and "holding at 10% after step 1/2" in paused
        status = json.loads(ok(dep.run("status", "--json")).split("\n[", 1)[0])
        assert status["canary"]["weight"] == 10 and status["canary"]["new"] == "green"
        assert status["router"]["weights"] == {"blue": 90, "green": 10}
        assert set(status["traffic"]) == {"blue", "green"}
        refused = failed(dep.run("deploy", "--force"))
        assert "a canary of acme/chat-v2 is in progress" in refused
        again = ok(dep.run("promote"))
        assert "holding at 50% after step 2/2" in again
        ok(dep.run("promote"))  # past the last step: the full switch and the rest of the deploy
    assert traffic.failures == []
    assert dep.serving_model() == "acme/chat-v2"
    assert not json.loads((dep.state_dir() / "state.json").read_text())["canary"]

    dep.write("acme/chat-v3", rollout=rollout)
    ok(dep.run("deploy"))
    aborted = ok(dep.run("abort"))
    assert "Canary aborted: all traffic is back on green" in aborted
    assert dep.serving_model() == "acme/chat-v2"
    assert dep.container_status("blue") == "exited", "v1, kept for rollback, is restored"
    failed(dep.run("promote"))  # nothing left to promote


def test_an_inconclusive_step_pauses_instead_of_guessing(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2", rollout=canary([(10, "2s")], rollback_on={"min_requests": 50}))
    out = ok(dep.run("deploy"))  # no client traffic at all: nothing to judge
    assert "inconclusive" in out and "fewer than rollout.rollback_on.min_requests (50)" in out
    full = ok(dep.run("promote", "--full"))
    assert "Deployed" in full
    assert dep.serving_model() == "acme/chat-v2"


def _canary_config_loaded(dep: Deployment) -> bool:
    """The router config on disk routes to green and nginx answers with that config's id."""
    from bgdeploy.plan.nginx import managed_config_id, parse_managed_header

    try:
        text = (dep.state_dir() / "router" / "nginx.conf").read_text()
    except OSError:
        return False
    header = parse_managed_header(text) or {}
    if "green:" not in header.get("weights", ""):
        return False
    try:
        answered = dep.chat(timeout=5).headers.get("x-bgdeploy-config")
    except httpx.HTTPError:
        return False
    return answered is not None and answered == managed_config_id(text)


def test_a_canary_killed_mid_step_is_recorded_and_can_be_aborted(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2", rollout=canary([(10, "120s")]))
    proc = dep.start("deploy")
    state = dep.state_dir() / "state.json"
    try:
        dep.wait_for(lambda: '"canary": {' in state.read_text(), 60, "the canary to be recorded")
        # Kill once nginx has loaded the canary's config: a kill between writing it and the reload is another
        # case (status then reports the router loudly, exit 1), and which one a fixed wait hits depends on load.
        dep.wait_for(lambda: _canary_config_loaded(dep), 60, "nginx to load the canary's router config")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    status = ok(dep.run("status"))
    assert "canary: acme/chat-v2 on green, step 1/1 at 10%, running" in status
    out = ok(dep.run("abort", "--force-unlock"))
    assert "removed the lock held by" in out
    assert dep.serving_model() == "acme/chat-v1"
    assert dep.chat().headers["x-bgdeploy-colour"] == "blue"
    assert dep.container_status("green") == "absent"
