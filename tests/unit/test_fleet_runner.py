"""The fleet's orchestration without any host: batches, the stop rule, the fleet-wide rollback, tolerance.

The single-host cycle (deploy, rollback), the preflight and the gate are replaced by scripted stand-ins;
what is tested is the order the runner calls them in and what it concludes.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
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


def spec_text(hosts: int, fleet: str, rollout: str = "") -> str:
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
{rollout}  fleet: {fleet}
"""


def release(model: str, colour: str) -> Release:
    return Release(colour=colour, model=model, image="img", spec_hash="x", deployed_at="now")  # type: ignore[arg-type]


@dataclass
class Script:
    """What each host does when the runner deploys it; a log of the calls, in order."""

    outcome: dict[str, str]  # label -> deployed | failed | unchanged | gate-fails | interrupted
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    slept: list[float] = field(default_factory=list)
    canary_steps: dict[str, bool] = field(default_factory=dict)  # label -> whether its deploy ran the steps
    in_flight: int = 0  # hosts waiting to be interrupted

    def log(self, text: str) -> None:
        with self.lock:
            self.calls.append(text)


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch) -> Any:
    def build(hosts: int, fleet: str, outcome: dict[str, str], rollout: str = "") -> tuple[runner.Fleet, Script]:
        loaded = load(spec_text(hosts, fleet, rollout))
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

        def deploy(session: Any, force: bool = False, canary_steps: bool = True) -> None:
            what = script.outcome[session.label]
            script.log(f"deploy {session.label}")
            script.canary_steps[session.label] = canary_steps
            if what == "failed":
                raise DeployFailed("validation of green failed")
            if what == "interrupted":
                wait_for_the_interrupt(script, session)
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


def wait_for_the_interrupt(script: Script, session: Any) -> None:
    """Stand in for a host's cycle in flight: wait (bounded) for the KeyboardInterrupt the runner passes on
    when SIGTERM reaches the process, then undo as the single-host cycle does."""
    deadline = time.monotonic() + 60
    try:
        with script.lock:
            script.in_flight -= 1
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except KeyboardInterrupt:
        script.log(f"undo {session.label}")
        session.result.failure = "interrupted (SIGINT/SIGTERM)"
        raise DeployFailed(session.result.failure) from None
    script.log(f"never interrupted {session.label}")


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


CANARY = "  strategy: canary\n  steps: [{weight: 10, bake: 1m}]\n"


def test_with_a_canary_strategy_the_first_batch_is_the_canary_and_the_rest_switch_at_once(make: Any) -> None:
    fleet, script = make(4, "{batch: 2}", dict.fromkeys(["h1", "h2", "h3", "h4"], "deployed"), CANARY)
    runner.deploy_fleet(fleet)
    assert fleet.result.outcome == "deployed"
    assert fleet.result.batches == [["h1"], ["h2", "h3"], ["h4"]]
    assert script.canary_steps == {"h1": True, "h2": False, "h3": False, "h4": False}
    assert script.calls[:2] == ["deploy h1", "gate h1"]  # the canary's gate passed before any other host moved


def test_a_failed_canary_batch_stops_the_rollout_before_any_other_host(make: Any) -> None:
    fleet, script = make(3, "{batch: 2}", {"h1": "failed", "h2": "deployed", "h3": "deployed"}, CANARY)
    runner.deploy_fleet(fleet)
    assert fleet.result.outcome == "failed"
    assert outcomes(fleet) == {"h1": "failed", "h2": "untouched", "h3": "untouched"}
    assert script.calls == ["deploy h1"]


def test_a_canary_batch_that_failed_within_the_tolerance_proved_nothing_the_next_batch_is_the_canary(
    make: Any,
) -> None:
    fleet, script = make(
        3, "{batch: 1, max_failed_hosts: 1}", {"h1": "failed", "h2": "deployed", "h3": "deployed"}, CANARY
    )
    runner.deploy_fleet(fleet)
    assert fleet.result.outcome == "partial"
    assert script.canary_steps == {"h1": True, "h2": True, "h3": False}


def test_every_host_runs_the_canary_steps_when_the_spec_says_so(make: Any) -> None:
    fleet, script = make(3, "{batch: 2, canary: every-host}", dict.fromkeys(["h1", "h2", "h3"], "deployed"), CANARY)
    runner.deploy_fleet(fleet)
    assert script.canary_steps == {"h1": True, "h2": True, "h3": True}


def test_a_release_already_serving_on_a_host_has_passed_its_canary(make: Any) -> None:
    # The first batch paused (auto_promote: false) and was promoted by hand: the next deploy does not start
    # another canary on the remaining hosts.
    fleet, script = make(3, "{batch: 1}", {"h1": "unchanged", "h2": "deployed", "h3": "deployed"}, CANARY)
    runner.deploy_fleet(fleet)
    assert fleet.result.batches == [["h2"], ["h3"]]
    assert script.canary_steps == {"h1": True, "h2": False, "h3": False}  # h1: the quick converging cycle only


def test_all_at_once_is_unaffected(make: Any) -> None:
    fleet, script = make(2, "{batch: 1}", dict.fromkeys(["h1", "h2"], "deployed"))
    runner.deploy_fleet(fleet)
    assert script.canary_steps == {"h1": False, "h2": False}


def test_fleet_canary_without_a_canary_strategy_is_refused_with_its_line() -> None:
    from tests.unit.conftest import problems

    assert problems(spec_text(2, "{canary: every-host}")) == [
        "bluegreen.yaml:13:19: rollout.fleet.canary: rollout.fleet.canary only applies to strategy: canary; set "
        "rollout.strategy: canary or remove it"
    ]


def test_sigterm_mid_batch_rolls_back_each_host_in_flight_and_leaves_the_rest(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, script = make(
        4, "{first_batch: 1, batch: 2}", {"h1": "deployed", "h2": "interrupted", "h3": "interrupted", "h4": "deployed"}
    )
    script.in_flight = 2
    real_wait = runner._wait
    sent: list[bool] = []

    def wait(future: Any) -> None:
        # The runner's main thread waits on the batch; once both hosts are in flight, SIGTERM reaches the process
        # (a cancelled CI job), its handler runs here in the main thread, as it does in `bgdeploy deploy`.
        deadline = time.monotonic() + 60
        while script.in_flight > 0 and not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if script.in_flight == 0 and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        real_wait(future)

    monkeypatch.setattr(runner, "_wait", wait)
    from bgdeploy.fleet import command

    previous = signal.signal(signal.SIGTERM, command._interrupt)  # what `bgdeploy deploy` installs
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.deploy_fleet(fleet)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sorted(c for c in script.calls if c.startswith(("undo", "never"))) == ["undo h2", "undo h3"], script.calls
    assert "deploy h4" not in script.calls  # no later batch starts
    assert outcomes(fleet) == {"h1": "deployed", "h2": "failed", "h3": "failed", "h4": "untouched"}
    assert fleet.nodes[1].report.failure == "interrupted (SIGINT/SIGTERM)"
    assert fleet.result.outcome == "failed"
    assert "interrupted (SIGINT/SIGTERM) during batch 2" in (fleet.result.failure or "")
