"""`bgdeploy remove` and `bgdeploy list` on the testbed: one of two deployments on a host taken down while
the other keeps serving (both router modes), leftovers flagged and cleaned, idempotence, the prompt."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO_ROOT, Testbed
from tests.integration.deployments import Deployment, Traffic, ok
from tests.integration.test_host_router import LocalDeployment, host_nginx
from tests.integration.test_policy_host import install, policy_file, with_policy

pytestmark = pytest.mark.integration
__all__ = ["host_nginx", "policy_file"]  # the fixtures, used by name


def rm_name() -> str:
    return "rm" + uuid.uuid4().hex[:8]


@pytest.fixture
def pair(testbed: Testbed, docker_client: Any, tmp_path: Path) -> Iterator[tuple[Deployment, Deployment]]:
    first = Deployment(testbed, tmp_path / "a", docker_client, name=rm_name())
    second = Deployment(testbed, tmp_path / "b", docker_client, name=rm_name())
    for d in (first, second):
        d.workdir.mkdir()
    yield first, second
    first.cleanup()
    second.cleanup()


def listed(d: Deployment, *extra: str) -> dict[str, dict[str, Any]]:
    done = d.run("list", "--json", *extra)
    ok(done)
    return {row["name"]: row for row in json.loads(done.stdout)["deployments"]}


def leftovers_of(d: Deployment) -> dict[str, list[str]]:
    """What is left of `d` on the host, as Docker and the file system see it (empty: nothing)."""
    out: dict[str, list[str]] = {}
    containers = d.docker.containers.list(all=True, filters={"label": f"dev.bgdeploy.name={d.name}"})
    if containers:
        out["containers"] = [c.name for c in containers]
    networks = [n.name for n in d.docker.networks.list(names=[f"bgdeploy-{d.name}"]) if n.name == f"bgdeploy-{d.name}"]
    if networks:
        out["networks"] = networks
    if d.state_dir().exists():
        out["state"] = [str(d.state_dir())]
    return out


def host_history(d: Deployment) -> list[dict[str, Any]]:
    path = d.state_dir().parent / "history.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [entry for entry in map(json.loads, lines) if entry.get("name") == d.name]


def test_remove_one_of_two_while_the_other_serves(pair: tuple[Deployment, Deployment], testbed: Testbed) -> None:
    gone, kept = pair
    for d in pair:
        d.write("acme/chat-v1")
        ok(d.run("deploy"))
    # list from the spec's target and from --host both show both deployments (other tests' may be there too).
    address = f"{testbed.user}@{testbed.host}:{testbed.port}"
    rows = listed(kept, "--host", address, "--host-key", testbed.host_key)
    assert {gone.name, kept.name} <= listed(kept).keys() & rows.keys()
    for d in pair:
        row = rows[d.name]
        assert (row["live"], row["model"], row["router"], row["router_port"]) == (
            "blue",
            "acme/chat-v1",
            "container",
            d.port,
        ), row
        assert row["health"] == "healthy" and row["gpus"] == "none" and row["leftovers"] == [], row
        assert "deploy deployed" in row["last_deploy"], row

    with Traffic(kept.url) as traffic:
        kept.wait_for(lambda: len(traffic.models) >= 10, 30, "traffic to flow")
        out = ok(gone.run("remove", "--yes"))
        sent = traffic.sent
        kept.wait_for(lambda: traffic.sent >= sent + 10, 30, "more traffic after the removal")
    assert traffic.failures == [], traffic.failures[:5]
    assert f"bgdeploy-{gone.name}-router" in out and f"Removed: {gone.name} is gone" in out, out
    assert leftovers_of(gone) == {}
    assert gone.name not in listed(kept) and kept.name in listed(kept)
    assert kept.serving_model() == "acme/chat-v1"
    assert [e["outcome"] for e in host_history(gone)] == ["started", "removed"]

    # Removing what is gone does nothing and succeeds.
    again = ok(gone.run("remove", "--yes"))
    assert "nothing to do" in again and f"nothing of {gone.name} was on the host" in again, again


def test_host_mode_remove_keeps_the_other_include_serving(
    testbed: Testbed, docker_client: Any, tmp_path: Path, host_nginx: None
) -> None:
    gone = LocalDeployment(testbed, tmp_path / "a", docker_client, name=rm_name())
    kept = LocalDeployment(testbed, tmp_path / "b", docker_client, name=rm_name())
    try:
        for d in (gone, kept):
            d.workdir.mkdir()
            d.write("acme/chat-v1")
            ok(d.run("deploy"))
        rows = listed(kept)
        assert rows[gone.name]["router"] == "host" and rows[gone.name]["router_port"] == gone.port, rows
        with Traffic(kept.url) as traffic:
            kept.wait_for(lambda: len(traffic.models) >= 10, 30, "traffic to flow")
            ok(gone.run("remove", "--yes"))
            sent = traffic.sent
            kept.wait_for(lambda: traffic.sent >= sent + 10, 30, "more traffic after the removal")
        assert traffic.failures == [], traffic.failures[:5]
        assert not gone.include.exists() and kept.include.exists()
        assert leftovers_of(gone) == {}
        assert kept.serving_model() == "acme/chat-v1"
        assert gone.name not in listed(kept)
    finally:
        gone.cleanup()
        kept.cleanup()


def test_remove_after_a_runner_killed_mid_deploy(dep: Deployment) -> None:
    code, _ = dep.interrupt_while_loading(lambda proc: proc.kill())
    assert code != 0
    # The killed runner left its lock and a loading green behind: --force-unlock, then everything goes.
    out = ok(dep.run("remove", "--yes", "--force-unlock"))
    assert "--force-unlock" in out, out
    assert leftovers_of(dep) == {}


def test_a_hand_made_network_is_flagged_and_removed(dep: Deployment) -> None:
    leftover = Deployment(dep.testbed, dep.workdir, dep.docker, name=rm_name())
    dep.docker.networks.create(f"bgdeploy-{leftover.name}", driver="bridge")
    try:
        dep.write()  # a spec for this host, of another name: --name points remove at the leftover
        row = listed(dep)[leftover.name]
        assert row["network"] and not row["state"] and row["containers"] == {}, row
        assert any("no state" in item and f"--name {leftover.name}" in item for item in row["leftovers"]), row
        out = ok(dep.run("remove", "--yes", "--name", leftover.name))
        assert f"network bgdeploy-{leftover.name}" in out, out
        assert leftovers_of(leftover) == {}
        assert leftover.name not in listed(dep)
    finally:
        leftover.cleanup()


def test_remove_asks_and_refuses_without_a_terminal(dep: Deployment) -> None:
    dep.write()
    ok(dep.run("deploy"))
    done = dep.run("remove")  # stdin is not a terminal (subprocess, no input)
    assert done.returncode == 2, done
    assert "--yes" in done.stderr and "nothing was removed" in done.stderr, done.stderr
    # On a terminal it shows what it would remove and asks; "n" removes nothing.
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            dep.command("remove"),
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dep.environ(),
            cwd=REPO_ROOT,
        )
        os.write(primary, b"n\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 1, (out, err)
    assert f"container bgdeploy-{dep.name}-blue (running)" in err and "Remove them? [y/N]" in err, err
    assert "nothing was removed" in err, err
    assert dep.container_status("blue") == "running" and dep.serving_model() == "acme/chat-v1"


def test_keep_state_keeps_the_history_and_a_second_remove_takes_it(dep: Deployment) -> None:
    dep.write()
    ok(dep.run("deploy"))
    ok(dep.run("remove", "--yes", "--keep-state"))
    assert leftovers_of(dep) == {"state": [str(dep.state_dir())]}
    state = json.loads((dep.state_dir() / "state.json").read_text())
    assert state["live"] is None and state["previous"]["model"] == "acme/chat-v1", state
    history = [json.loads(line) for line in (dep.state_dir() / "history.jsonl").read_text().splitlines()]
    assert [(e["command"], e["outcome"]) for e in history] == [("deploy", "deployed"), ("remove", "removed")]
    row = listed(dep)[dep.name]
    assert row["state"] and row["containers"] == {} and row["live"] is None, row
    assert any("state directory with no container" in item for item in row["leftovers"]), row
    ok(dep.run("remove", "--yes"))
    assert leftovers_of(dep) == {}


def test_the_host_policy_gates_a_removal(dep: Deployment, policy_file: Path) -> None:
    dep.write()
    ok(dep.run("deploy"))
    install(policy_file, {"version": 1, "images": ["bgdeploy-test/*"], "names": ["only-these-*"]})
    with_policy(dep, policy_file)
    done = dep.run("remove", "--yes")
    assert done.returncode == 2, done
    assert "names" in done.stderr and dep.name in done.stderr, done.stderr
    assert dep.container_status("blue") == "running" and dep.serving_model() == "acme/chat-v1"


def test_history_shows_deploys_and_outlives_a_removal(dep: Deployment) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2")
    ok(dep.run("deploy"))
    text = ok(dep.run("history"))
    assert "blue acme/chat-v1 -> green acme/chat-v2" in text and "- -> blue acme/chat-v1" in text, text
    done = dep.run("history", "-n", "1", "--json")
    ok(done)
    last = json.loads(done.stdout)
    assert [(e["command"], e["outcome"], e["to"]["model"]) for e in last["history"]] == [
        ("deploy", "deployed", "acme/chat-v2")
    ]
    # --json is the same everywhere: alone it prints parseable JSON on stdout, with FILE it writes FILE.
    again = dep.run("deploy", "--json")
    ok(again)
    assert json.loads(again.stdout)["outcome"] == "unchanged", again.stdout
    ok(dep.run("status", "--json", str(dep.workdir / "status.json")))
    assert json.loads((dep.workdir / "status.json").read_text())["live"]["model"] == "acme/chat-v2"
    ok(dep.run("remove", "--yes"))
    after = ok(dep.run("history"))
    assert "remove   removed" in after and "taken off the host" in after, after
