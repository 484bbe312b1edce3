"""The fleet's orchestration without any host: batches, the stop rule, the fleet-wide rollback, tolerance.

The single-host cycle (deploy, rollback), the preflight and the gate are replaced by scripted stand-ins;
what is tested is the order the runner calls them in and what it concludes.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from bgdeploy.errors import DeployFailed
from bgdeploy.execute.session import Output
from bgdeploy.fleet import runner
from bgdeploy.fleet.members import members
from bgdeploy.fleet.result import FleetResult, HostReport
from bgdeploy.plan.result import Result
from bgdeploy.plan.state import Release
from tests.unit.conftest import HOST_KEY, load


def spec_text(hosts: int, fleet: str) -> str:
    listed = "".join(f"    - {{host: 10.0.0.{i + 1}, label: h{i + 1}}}\n" for i in range(hosts))
    return f"""\
version: 1
name: chat
target:
  host_key: "{HOST_KEY}"
  hosts:
{listed}model:
  name: m2
runtime:
  image: img
rollout:
  fleet: {fleet}
"""


def release(model: str, colour: str) -> Release:
    return Release(colour=colour, model=model, image="img", spec_hash="x", deployed_at="now")  # type: ignore[arg-type]


@dataclass
class Script:
    """What each host does when the runner deploys it; a log of the calls, in order."""

    outcome: dict[str, str]  # label -> deployed | failed | unchanged | gate-fails
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    slept: list[float] = field(default_factory=list)

    def log(self, text: str) -> None:
        with self.lock:
            self.calls.append(text)


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch) -> Any:
    def build(hosts: int, fleet: str, outcome: dict[str, str]) -> tuple[runner.Fleet, Script]:
        loaded = load(spec_text(hosts, fleet))
        script = Script(outcome)
        nodes = []
        for m in members(loaded.spec):
            session = SimpleNamespace(loaded=SimpleNamespace(spec=m.spec), label=m.label, result=None)
            nodes.append(runner.Node(m, session, HostReport(m.label, m.address)))  # type: ignore[arg-type]
        clock = SimpleNamespace(sleep=script.slept.append, now=lambda: 0.0)
        result = FleetResult(command="deploy", name="chat", hosts=[n.report for n in nodes])
        fleet = runner.Fleet(loaded, nodes, result, Output(stream=io.StringIO()), clock)  # type: ignore[arg-type]

        def preflight(fleet: runner.Fleet, **_: Any) -> None:
            for node in fleet.nodes:
                unchanged = script.outcome[node.member.label] == "unchanged"
                node.session.result = Result(command="plan", name="chat")
                node.session.result.plan = SimpleNamespace(unchanged=unchanged)  # type: ignore[assignment]
                node.report.before = release("m1", "blue")

        def deploy(session: Any, force: bool = False) -> None:
            what = script.outcome[session.label]
            script.log(f"deploy {session.label}")
            if what == "failed":
                raise DeployFailed("validation of green failed")
            session.result.outcome = "unchanged" if what == "unchanged" else "deployed"
            session.result.target = release("m2", "green")
            session.result.active_colour = "green"

        def rollback(session: Any) -> None:
            script.log(f"rollback {session.label}")
            session.result.outcome = "rolled-back"

        def gate(node: runner.Node) -> str | None:
            script.log(f"gate {node.member.label}")
            return "the router serves blue, not green" if script.outcome[node.member.label] == "gate-fails" else None

        monkeypatch.setattr(runner, "preflight", preflight)
        monkeypatch.setattr(runner, "deploy", deploy)
        monkeypatch.setattr(runner, "rollback", rollback)
        monkeypatch.setattr(runner, "gate", gate)
        monkeypatch.setattr(runner, "_record", lambda *a: None)
        return fleet, script

    return build


def outcomes(fleet: runner.Fleet) -> dict[str, str]:
    return {n.member.label: n.report.outcome for n in fleet.nodes}


def test_every_host_batch_by_batch_with_a_gate_after_each(make: Any) -> None:
    fleet, script = make(
        4, "{first_batch: 1, batch: 2, pause: 5s}", dict.fromkeys(["h1", "h2", "h3", "h4"], "deployed")
    )
    runner.deploy_fleet(fleet)
    assert fleet.result.outcome == "deployed"
    assert fleet.result.batches == [["h1"], ["h2", "h3"], ["h4"]]
    assert script.calls[:2] == ["deploy h1", "gate h1"]
    assert sorted(script.calls[2:4]) == ["deploy h2", "deploy h3"] and sorted(script.calls[4:6]) == [
        "gate h2",
        "gate h3",
    ]
    assert script.calls[6:] == ["deploy h4", "gate h4"]
    assert script.slept == [5.0, 5.0, 5.0]  # the pause after every batch, before its gate
    assert [n.report.batch for n in fleet.nodes] == [1, 2, 2, 3]


def test_a_failure_beyond_the_limit_rolls_back_every_switched_host_and_leaves_the_rest(make: Any) -> None:
    fleet, script = make(4, "{batch: 1}", {"h1": "deployed", "h2": "failed", "h3": "deployed", "h4": "deployed"})
    runner.deploy_fleet(fleet)
    assert fleet.result.outcome == "failed"
    assert outcomes(fleet) == {"h1": "rolled-back", "h2": "failed", "h3": "untouched", "h4": "untouched"}
    assert script.calls == ["deploy h1", "gate h1", "deploy h2", "rollback h1"]
    assert "more than rollout.fleet.max_failed_hosts (0)" in (fleet.result.failure or "")
    assert fleet.result.hosts_failed == ["h2"]


def test_failures_within_the_limit_finish_the_rollout_as_partial(make: Any) -> None:
    fleet, script = make(3, "{batch: 1, max_failed_hosts: 1}", {"h1": "deployed", "h2": "failed", "h3": "deployed"})
    runner.deploy_fleet(fleet)
    assert fleet.result.outcome == "partial"
    assert outcomes(fleet) == {"h1": "deployed", "h2": "failed", "h3": "deployed"}
    assert not any(c.startswith("rollback") for c in script.calls)


def test_a_host_failing_the_gate_is_rolled_back_and_counts_as_failed(make: Any) -> None:
    fleet, script = make(3, "{batch: 1, max_failed_hosts: 1}", {"h1": "deployed", "h2": "gate-fails", "h3": "deployed"})
    runner.deploy_fleet(fleet)
    assert outcomes(fleet) == {"h1": "deployed", "h2": "rolled-back", "h3": "deployed"}
    assert "rollback h2" in script.calls and "rollback h1" not in script.calls
    assert fleet.result.outcome == "partial"
    assert fleet.result.hosts_failed == ["h2"]  # its failure stays on record after the rollback


def test_hosts_already_on_the_release_are_not_batched(make: Any) -> None:
    fleet, _ = make(3, "{batch: 1}", {"h1": "unchanged", "h2": "deployed", "h3": "unchanged"})
    runner.deploy_fleet(fleet)
    assert fleet.result.batches == [["h2"]]
    assert outcomes(fleet) == {"h1": "unchanged", "h2": "deployed", "h3": "unchanged"}
    assert fleet.result.outcome == "deployed"
