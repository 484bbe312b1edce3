"""Red-team tests of the fleet's promises (RT11), on scripted hosts: no network, no sleeps.

Each test is one way the fleet could break a promise of issue #11: a rollback failing during the fleet-wide
rollback, a host whose connection drops mid-batch with an unexpected error, --host naming two hosts, locks
taken in an order that depends on how a spec spells a host, secrets in --json / --report files.
"""

from __future__ import annotations

import argparse
import io
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bgdeploy.errors import DeployFailed, TransportError, UsageError
from bgdeploy.execute.session import Output
from bgdeploy.fleet import command, runner
from bgdeploy.fleet.members import lock_order, members, select
from bgdeploy.fleet.result import FleetResult, HostReport
from bgdeploy.plan.result import Result
from bgdeploy.plan.state import Release
from bgdeploy.untrusted import secrets
from tests.unit.conftest import HOST_KEY, load


def spec_text(hosts: list[str], fleet: str = "{batch: 1}") -> str:
    listed = "".join(f"    - {h}\n" for h in hosts)
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


def scripted(
    monkeypatch: pytest.MonkeyPatch, hosts: int, fleet: str, deploy_does: dict[str, Any], rollback_does: dict[str, Any]
) -> tuple[runner.Fleet, list[str]]:
    """A fleet of `hosts` scripted hosts h1..hN; deploy_does/rollback_does: label -> exception to raise."""
    loaded = load(spec_text([f"{{host: 10.0.0.{i + 1}, label: h{i + 1}}}" for i in range(hosts)], fleet))
    calls: list[str] = []
    guard = threading.Lock()
    nodes = []
    for m in members(loaded.spec):
        session = SimpleNamespace(loaded=SimpleNamespace(spec=m.spec), label=m.label, result=None)
        nodes.append(runner.Node(m, session, HostReport(m.label, m.address)))  # type: ignore[arg-type]
    result = FleetResult(command="deploy", name="chat", hosts=[n.report for n in nodes])
    clock = SimpleNamespace(sleep=lambda s: None, now=lambda: 0.0)
    fleet = runner.Fleet(loaded, nodes, result, Output(stream=io.StringIO()), clock)  # type: ignore[arg-type]

    def preflight(fleet: runner.Fleet, **_: Any) -> None:
        for node in fleet.nodes:
            node.session.result = Result(command="plan", name="chat")
            node.session.result.plan = SimpleNamespace(unchanged=False)  # type: ignore[assignment]
            node.report.before = release("m1", "blue")

    def deploy(session: Any, force: bool = False, **_: Any) -> None:
        with guard:
            calls.append(f"deploy {session.label}")
        if isinstance(deploy_does.get(session.label), BaseException):
            raise deploy_does[session.label]
        session.result.outcome = deploy_does.get(session.label, "deployed")
        session.result.target = release("m2", "green")
        session.result.active_colour = "green"

    def rollback(session: Any) -> None:
        with guard:
            calls.append(f"rollback {session.label}")
        if session.label in rollback_does:
            raise rollback_does[session.label]
        session.result.outcome = "rolled-back"

    monkeypatch.setattr(runner, "preflight", preflight)
    monkeypatch.setattr(runner, "deploy", deploy)
    monkeypatch.setattr(runner, "rollback", rollback)

    def abort(session: Any) -> None:
        with guard:
            calls.append(f"abort {session.label}")
        session.result.outcome = "aborted"

    monkeypatch.setattr(runner, "abort", abort, raising=False)
    monkeypatch.setattr(runner, "gate", lambda node: None)
    monkeypatch.setattr(runner, "_record", lambda *a: None)
    return fleet, calls


def outcomes(fleet: runner.Fleet) -> dict[str, str]:
    return {n.member.label: n.report.outcome for n in fleet.nodes}


# -- a rollback failing during the fleet-wide rollback ---------------------------------------------------


def test_a_rollback_that_fails_does_not_stop_the_others_and_the_report_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, calls = scripted(
        monkeypatch,
        4,
        "{first_batch: 2, batch: 1}",
        {"h3": DeployFailed("validation of green failed")},
        {"h1": TransportError("the connection to 10.0.0.1 dropped")},
    )
    runner.deploy_fleet(fleet)
    assert fleet.result.outcome == "failed"
    assert "rollback h2" in calls and "rollback h1" in calls
    assert outcomes(fleet)["h2"] == "rolled-back" and outcomes(fleet)["h4"] == "untouched"
    # h1 still serves the new release: not "deployed" as if all went well, and the failure does not claim
    # that every switched host was rolled back.
    assert outcomes(fleet)["h1"] == "failed"
    assert "h1" in fleet.result.hosts_failed and "h1" not in fleet.result.hosts_deployed
    failure = fleet.result.failure or ""
    assert "every host it switched was rolled back" not in failure
    assert "h1" in failure and "rollback" in failure


def test_an_unexpected_error_in_one_rollback_still_rolls_back_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, calls = scripted(
        monkeypatch,
        3,
        "{first_batch: 2, batch: 1}",
        {"h3": DeployFailed("validation of green failed")},
        {"h1": EOFError()},
    )
    runner.deploy_fleet(fleet)  # no exception out of the fleet: its result says what happened
    assert "rollback h2" in calls and "rollback h1" in calls
    assert outcomes(fleet) == {"h1": "failed", "h2": "rolled-back", "h3": "failed"}
    assert fleet.result.outcome == "failed"
    assert "h1" in (fleet.result.failure or "")


# -- a connection that drops mid-batch with an error the transport did not wrap ---------------------------


def test_an_unexpected_error_mid_batch_fails_that_host_and_rolls_back_the_fleet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet, calls = scripted(
        monkeypatch, 4, "{first_batch: 1, batch: 2}", {"h3": ConnectionResetError(104, "Connection reset by peer")}, {}
    )
    runner.deploy_fleet(fleet)
    assert fleet.result.outcome == "failed"
    assert "rollback h1" in calls and "rollback h2" in calls  # h2 was switched in the same batch as h3
    assert outcomes(fleet) == {"h1": "rolled-back", "h2": "rolled-back", "h3": "failed", "h4": "untouched"}
    assert "Connection reset by peer" in (fleet.nodes[2].report.failure or "")


# -- --host ------------------------------------------------------------------------------------------------


def test_host_naming_two_hosts_is_refused_not_the_first_picked() -> None:
    # Two hosts at one address (two sshd ports): the address without a port names both.
    spec = load(spec_text(["{host: 10.0.0.1, port: 2201}", "{host: 10.0.0.1, port: 2202}"])).spec
    with pytest.raises(UsageError, match="names 2 hosts"):
        select(members(spec), "10.0.0.1")
    assert [m.port for m in select(members(spec), "10.0.0.1:2202")] == [2202]


def test_a_label_names_its_own_host_even_when_it_is_another_hosts_address() -> None:
    spec = load(spec_text(["{host: 10.0.0.1, label: 10.0.0.2}", "{host: 10.0.0.2, label: b}"])).spec
    assert [m.host for m in select(members(spec), "10.0.0.2")] == ["10.0.0.1"]  # labels are unique: exact


def test_host_that_matches_nothing_lists_the_known_hosts() -> None:
    spec = load(spec_text(["{host: 10.0.0.1, label: a}", "{host: 10.0.0.2, label: b}"])).spec
    with pytest.raises(UsageError, match=r"known: a, b"):
        select(members(spec), "c")


# -- lock order --------------------------------------------------------------------------------------------


def test_the_lock_order_does_not_depend_on_how_a_spec_spells_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {"gpu-two": "10.0.0.2", "GPU-TWO.": "10.0.0.2", "gpu-three": "10.0.0.3", "10.0.0.2": "10.0.0.2"}
    resolve = names.__getitem__
    a = members(load(spec_text(["{host: 10.0.0.2, port: 22}", "{host: gpu-three}"])).spec)
    b = members(load(spec_text(["{host: gpu-three}", "{host: gpu-two}"])).spec)
    c = members(load(spec_text(["{host: GPU-TWO.}", "{host: gpu-three}"])).spec)
    order = [[resolve(m.host) for m in lock_order(x, resolve=resolve)] for x in (a, b, c)]
    assert order == [["10.0.0.2", "10.0.0.3"]] * 3


def test_a_name_that_does_not_resolve_locally_sorts_by_its_normalised_spelling() -> None:
    def nowhere(host: str) -> str:
        raise OSError("not resolvable here")

    a = members(load(spec_text(["{host: Gpu-B.example.}", "{host: gpu-a.example}"])).spec)
    b = members(load(spec_text(["{host: gpu-b.example}", "{host: GPU-A.example}"])).spec)
    assert [m.host.lower().rstrip(".") for m in lock_order(a, resolve=nowhere)] == ["gpu-a.example", "gpu-b.example"]
    assert [m.host.lower().rstrip(".") for m in lock_order(b, resolve=nowhere)] == ["gpu-a.example", "gpu-b.example"]


def test_one_host_spelled_twice_is_refused_by_validation() -> None:
    from tests.unit.conftest import problems

    found = problems(spec_text(["{host: GPU-A.example}", "{host: gpu-a.example.}"]))
    assert any("already host #1" in p for p in found), found


# -- secrets in the files a fleet command writes -----------------------------------------------------------


def test_fleet_json_and_report_files_are_masked(tmp_path: Path) -> None:
    secret = "hf_rt11SuperSecretTokenValue"
    secrets.register(secret)
    try:
        host = HostReport("h1", "10.0.0.1:22", outcome="failed", failure=f"container log: token={secret}")
        host.result = Result(command="deploy", name="chat", failure=f"green logged {secret}")
        result = FleetResult(command="deploy", name="chat", hosts=[host], warnings=[f"w {secret}"])
        args = argparse.Namespace(json=str(tmp_path / "out.json"), report=str(tmp_path / "report.md"))
        command._write_outputs(args, result)
        for name in ("out.json", "report.md"):
            text = (tmp_path / name).read_text()
            assert secret not in text and ("***" in text or "\\*\\*\\*" in text), name
    finally:
        secrets.forget_all()


# -- preflight: a blocker anywhere, nothing done anywhere (not even a pull) --------------------------------


def test_a_blocker_on_one_host_pulls_nothing_on_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load(spec_text(["{host: 10.0.0.1, label: h1}", "{host: 10.0.0.2, label: h2}"]))
    pulled: list[str] = []
    blockers = {"h1": [], "h2": ["green needs 2 GPU(s) with 40 GiB free; GPU 1 has 10 GiB"]}
    nodes = []
    for m in members(loaded.spec):
        session = SimpleNamespace(
            loaded=SimpleNamespace(spec=m.spec),
            label=m.label,
            result=None,
            host=SimpleNamespace(read_file=lambda path: None),
            layout=SimpleNamespace(state_file="/state.json"),
            out=SimpleNamespace(say=lambda text: None),
            engine=SimpleNamespace(pull=lambda image, label=m.label: pulled.append(label)),
        )
        nodes.append(runner.Node(m, session, HostReport(m.label, m.address)))  # type: ignore[arg-type]
    result = FleetResult(command="deploy", name="chat", hosts=[n.report for n in nodes])
    clock = SimpleNamespace(sleep=lambda s: None, now=lambda: 0.0)
    fleet = runner.Fleet(loaded, nodes, result, Output(stream=io.StringIO()), clock)  # type: ignore[arg-type]

    def run_plan(session: Any) -> None:
        session.result.plan = SimpleNamespace(
            unchanged=False,
            blockers=blockers[session.label],
            steps=[SimpleNamespace(kind="pull-image", skip=False)],
        )
        session.result.outcome = "failed" if blockers[session.label] else "planned"
        session.result.failure = "preflight: " + "; ".join(blockers[session.label]) if blockers[session.label] else None

    monkeypatch.setattr(runner, "state_problems", lambda text: [])
    monkeypatch.setattr(runner, "read_state", lambda session: SimpleNamespace(canary=None))
    monkeypatch.setattr(runner, "run_plan", run_plan)
    runner.preflight(fleet)
    assert fleet.result.outcome == "blocked"
    assert outcomes(fleet) == {"h1": "untouched", "h2": "blocked"}
    assert pulled == []  # h1's image is pulled only once every host passed its checks

    blockers["h2"] = []
    fleet.result.outcome = "failed"
    for node in fleet.nodes:
        node.report.blockers.clear()
        node.report.outcome = "untouched"
    runner.preflight(fleet)
    assert sorted(pulled) == ["h1", "h2"] and fleet.result.outcome != "blocked"


# -- locks: an interruption while taking them leaves none behind -------------------------------------------


def test_an_interrupt_while_taking_the_locks_releases_those_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load(spec_text(["{host: 10.0.0.1, label: h1}", "{host: 10.0.0.2, label: h2}"]))
    held: set[str] = set()

    class FakeLock:
        def __init__(self, host: Any, path: str, clock: Any) -> None:
            self.host = host
            self.warnings: list[str] = []

        def acquire(self, wait: float = 0.0) -> None:
            if self.host == "10.0.0.2":
                raise KeyboardInterrupt  # Ctrl-C while waiting for the second host's lock
            held.add(self.host)

        def release(self) -> None:
            held.discard(self.host)

    nodes = []
    for m in members(loaded.spec):
        session = SimpleNamespace(host=m.host, layout=SimpleNamespace(lock_file="/lock"), clock=None, warn=print)
        nodes.append(runner.Node(m, session, HostReport(m.label, m.address)))  # type: ignore[arg-type]
    result = FleetResult(command="deploy", name="chat", hosts=[n.report for n in nodes])
    fleet = runner.Fleet(loaded, nodes, result, Output(stream=io.StringIO()), None)  # type: ignore[arg-type]
    monkeypatch.setattr(runner, "HostLock", FakeLock)
    with pytest.raises(KeyboardInterrupt):
        runner.lock_all(fleet, lock_wait=0, unlock=False)
    assert held == set()
    assert all(n.lock is None for n in fleet.nodes)


# -- a canary paused in the batch where the rollout stops ---------------------------------------------------


def test_a_paused_canary_is_aborted_when_the_rollout_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    # strategy: canary, first batch of 2: h1's canary paused at its weight while h2 failed validation.
    fleet, calls = scripted(
        monkeypatch, 3, "{first_batch: 2, batch: 1}", {"h1": "paused", "h2": DeployFailed("validation failed")}, {}
    )
    runner.deploy_fleet(fleet)
    assert fleet.result.outcome == "failed"
    assert "abort h1" in calls  # its new colour took part of the traffic: it goes back like a switched host
    assert outcomes(fleet) == {"h1": "rolled-back", "h2": "failed", "h3": "untouched"}
    assert "every host it switched was rolled back" in (fleet.result.failure or "")


# -- failures known before the first batch ------------------------------------------------------------------


def test_a_steady_host_failing_stops_the_rollout_before_any_host_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, calls = scripted(monkeypatch, 3, "{batch: 1}", {"h1": DeployFailed("the router of h1 is broken")}, {})

    def preflight(fleet: runner.Fleet, **_: Any) -> None:
        for node in fleet.nodes:  # h1 already runs the release: only the quick converging cycle runs there
            node.session.result = Result(command="plan", name="chat")
            node.session.result.plan = SimpleNamespace(unchanged=node.member.label == "h1")  # type: ignore[assignment]
            node.report.before = release("m1", "blue")

    monkeypatch.setattr(runner, "preflight", preflight)
    runner.deploy_fleet(fleet)
    assert calls == ["deploy h1"]  # no host switched only to be rolled back again
    assert fleet.result.outcome == "failed"
    assert outcomes(fleet) == {"h1": "failed", "h2": "untouched", "h3": "untouched"}


# -- the whole-fleet rollback command ----------------------------------------------------------------------


def test_fleet_rollback_survives_an_unexpected_error_on_one_host(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, calls = scripted(monkeypatch, 3, "{batch: 1}", {}, {"h2": ConnectionResetError(104, "reset by peer")})
    fleet.result.command = "rollback"
    runner.rollback_fleet(fleet)
    assert sorted(calls) == ["rollback h1", "rollback h2", "rollback h3"]
    assert outcomes(fleet) == {"h1": "rolled-back", "h2": "failed", "h3": "rolled-back"}
    assert fleet.result.outcome == "failed" and "h2" in (fleet.result.failure or "")
    assert "reset by peer" in (fleet.nodes[1].report.failure or "")


def test_fleet_status_survives_an_unexpected_error_on_one_host(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, _ = scripted(monkeypatch, 2, "{batch: 1}", {}, {})

    def status(session: Any) -> dict[str, Any]:
        if session.label == "h2":
            raise EOFError("the connection closed")
        return {"live": {"model": "m2"}}

    monkeypatch.setattr(runner, "status", status)
    data = runner.status_fleet(fleet)
    assert data["hosts"]["h1"] == {"live": {"model": "m2"}}
    assert "the connection closed" in data["hosts"]["h2"]["error"]


def test_fleet_history_shows_the_other_hosts_when_one_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import contextlib
    import json

    from bgdeploy.lifecycle import listing

    loaded = load(spec_text(["{host: 10.0.0.1, label: h1}", "{host: 10.0.0.2, label: h2}"]))
    nodes = [
        runner.Node(
            m,
            SimpleNamespace(host=SimpleNamespace(name=m.label, description=m.address), layout=None),  # type: ignore[arg-type]
            HostReport(m.label, m.address),
        )
        for m in members(loaded.spec)
    ]

    @contextlib.contextmanager
    def open_fleet(*args: Any, **kwargs: Any) -> Any:
        yield SimpleNamespace(nodes=nodes)

    def read_history(host: Any, layout: Any, limit: int) -> list[dict[str, object]]:
        if host.name == "h2":
            raise TransportError("the connection to 10.0.0.2 dropped while reading history.jsonl")
        return [{"outcome": "deployed"}]

    monkeypatch.setattr(command, "open_fleet", open_fleet)
    monkeypatch.setattr(listing, "read_history", read_history)
    code = command.history(argparse.Namespace(fleet_host=None, n=5, json="-"), loaded)
    data = json.loads(capsys.readouterr().out)
    assert data["hosts"]["h1"]["history"] == [{"outcome": "deployed"}]
    assert "dropped" in data["hosts"]["h2"]["error"]
    assert code == 1


def test_one_host_listed_under_two_spellings_is_refused_before_any_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load(spec_text(["{host: 10.0.0.2, label: a}", "{host: gpu-two, label: b}"]))
    acquired: list[str] = []

    class FakeLock:
        def __init__(self, host: Any, path: str, clock: Any) -> None:
            self.host = host
            self.warnings: list[str] = []

        def acquire(self, wait: float = 0.0) -> None:
            acquired.append(self.host)

        def release(self) -> None:
            pass

    nodes = []
    for m in members(loaded.spec):
        session = SimpleNamespace(host=m.host, layout=SimpleNamespace(lock_file="/lock"), clock=None, warn=print)
        nodes.append(runner.Node(m, session, HostReport(m.label, m.address)))  # type: ignore[arg-type]
    result = FleetResult(command="deploy", name="chat", hosts=[n.report for n in nodes])
    fleet = runner.Fleet(loaded, nodes, result, Output(stream=io.StringIO()), None)  # type: ignore[arg-type]
    monkeypatch.setattr(runner, "HostLock", FakeLock)
    monkeypatch.setattr(runner, "resolve_address", {"10.0.0.2": "10.0.0.2", "gpu-two": "10.0.0.2"}.__getitem__)
    with pytest.raises(runner.FleetBlocked):
        runner.lock_all(fleet, lock_wait=30, unlock=False)
    assert acquired == []
    assert fleet.result.outcome == "blocked"
    assert "a and b are the same host (10.0.0.2:22)" in (fleet.result.failure or "")


def test_fleet_status_is_not_converged_when_one_host_runs_another_image_of_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet, _ = scripted(monkeypatch, 2, "{batch: 1}", {}, {})
    images = {"h1": "vllm/vllm-openai:v0.6.3", "h2": "vllm/vllm-openai:v0.6.4"}
    monkeypatch.setattr(runner, "status", lambda s: {"live": {"model": "m2", "image": images[s.label]}})
    data = runner.status_fleet(fleet)
    assert data["releases"] == {"h1": "m2", "h2": "m2"}
    assert data["converged"] is False  # as the deploy sees it: a release is the model and the image
