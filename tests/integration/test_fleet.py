"""Fleet deploys on three testbed hosts (`scripts/testbed up --hosts 3`): each its own network namespace,
sshd, dockerd and home, reached at its own address. Steady traffic goes to every host's router."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.conftest import REPO_ROOT, Testbed, unavailable
from tests.integration.deployments import PROMPTS, Traffic, failed, ok

pytestmark = pytest.mark.integration

HOSTS_NEEDED = 3
# Images tagged per test on each host's own engine; a pull from 127.0.0.1:1 is refused at once.
TAG_PREFIX = "127.0.0.1:1/fleet-test/fakevllm"


@dataclass(frozen=True)
class FleetHost:
    address: str
    port: int
    docker_url: str
    home: str


def _fleet_env() -> dict[str, str]:
    names = ("BGDEPLOY_TESTBED_HOSTS", "BGDEPLOY_TESTBED_HOSTS_DOCKER", "BGDEPLOY_TESTBED_HOSTS_HOME")
    found = {n: os.environ[n] for n in names if os.environ.get(n)}
    if len(found) < len(names):
        done = subprocess.run(
            [str(REPO_ROOT / "scripts" / "testbed"), "env"], capture_output=True, text=True, timeout=30, check=False
        )
        for line in done.stdout.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            if name in names and name not in found:
                found[name] = value.strip("'")
    missing = [n for n in names if not found.get(n)]
    if missing:
        unavailable(f"no fleet hosts ({', '.join(missing)} unset): run scripts/testbed up --hosts {HOSTS_NEEDED}")
    return found


@pytest.fixture(scope="module")
def fleet_hosts(testbed: Testbed) -> list[FleetHost]:
    env = _fleet_env()
    addresses = env["BGDEPLOY_TESTBED_HOSTS"].split()
    hosts = [
        FleetHost(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1]), d, h)
        for a, d, h in zip(
            addresses,
            env["BGDEPLOY_TESTBED_HOSTS_DOCKER"].split(),
            env["BGDEPLOY_TESTBED_HOSTS_HOME"].split(),
            strict=True,
        )
    ]
    if len(hosts) < HOSTS_NEEDED:
        unavailable(f"{len(hosts)} fleet host(s), {HOSTS_NEEDED} needed: run scripts/testbed up --hosts {HOSTS_NEEDED}")
    for host in hosts:
        if not host.address.startswith("10.213.0."):
            pytest.fail(f"fleet host {host.address}: tests only talk to the testbed's own namespaces", pytrace=False)
    return hosts[:HOSTS_NEEDED]


@pytest.fixture(scope="module")
def engines(fleet_hosts: list[FleetHost]) -> Iterator[list[Any]]:
    import docker

    clients = []
    try:
        for host in fleet_hosts:
            client = docker.DockerClient(base_url=host.docker_url, timeout=60)
            client.ping()
            clients.append(client)
    except docker.errors.DockerException as exc:
        unavailable(f"a fleet host's Docker engine does not answer: {exc}")
    yield clients
    for client in clients:
        client.close()


@dataclass
class FleetDeployment:
    testbed: Testbed
    hosts: list[FleetHost]
    engines: list[Any]
    workdir: Path
    name: str = field(default_factory=lambda: "fleet-" + uuid.uuid4().hex[:8])
    # The same port on every host (each host is its own network namespace).
    port: int = field(default_factory=lambda: random.randint(20000, 29999))
    tags: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [f"h{i + 1}" for i in range(len(self.hosts))]

    @property
    def spec_path(self) -> Path:
        return self.workdir / "bluegreen.yaml"

    def image(self, version: str, broken_on: int | None = None, missing_on: int | None = None) -> str:
        """An image tag of this test on every host: answers wrong on host `broken_on`, absent on `missing_on`."""
        tag = f"{TAG_PREFIX}:{self.name}-{version}"
        for i, engine in enumerate(self.engines):
            if i == missing_on:
                continue
            if i == broken_on:
                dockerfile = f"FROM {self.testbed.fakevllm_image}\nENV FAKEVLLM_FAULT=wrong-answers\n"
                engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
            else:
                engine.images.get(self.testbed.fakevllm_image).tag(tag)
        self.tags.append(tag)
        return tag

    def write(
        self, model: str, image: str, load_seconds: str = "1", rollout: dict[str, Any] | None = None, **fleet: Any
    ) -> None:
        spec = {
            "version": 1,
            "name": self.name,
            "target": {
                "user": self.testbed.user,
                "host_key": self.testbed.host_key,
                "hosts": [
                    {"host": h.address, "port": h.port, "label": label}
                    for h, label in zip(self.hosts, self.labels, strict=True)
                ],
            },
            "model": {"name": model, "served_name": "chat"},
            "runtime": {"image": image, "env": {"FAKEVLLM_LOAD_SECONDS": load_seconds}},
            "gpus": {"blue": [], "green": []},
            "router": {"image": self.testbed.nginx_image, "listen": self.port, "bind": "0.0.0.0"},
            "health": {"interval": "250ms", "ready_timeout": "60s"},
            "validation": {"concurrency": 2, "prompts": PROMPTS},
            "rollout": {"smoke": ["capital"], "bake": 0, "drain_timeout": "10s", "fleet": fleet},
        }
        spec["rollout"].update(rollout or {})
        self.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
        env["BGDEPLOY_SSH_KEY_FILE"] = self.testbed.key_file
        env.pop("BGDEPLOY_SSH_KEY", None)
        return env

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bgdeploy", *args, "-f", str(self.spec_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environ(),
            cwd=REPO_ROOT,
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "bgdeploy", *args, "-f", str(self.spec_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.environ(),
            cwd=REPO_ROOT,
        )

    def status_of(self, i: int, colour: str) -> str:
        try:
            return str(self.engines[i].containers.get(f"bgdeploy-{self.name}-{colour}").status)
        except Exception:  # absent
            return "absent"

    def url(self, i: int) -> str:
        return f"http://{self.hosts[i].address}:{self.port}"

    def serving(self, i: int) -> str:
        body = {"model": "chat", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
        response = httpx.post(f"{self.url(i)}/v1/chat/completions", json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.headers.get("x-model", "")

    def containers(self, i: int) -> dict[str, str]:
        """This deployment's containers on host i: name -> model label."""
        found = self.engines[i].containers.list(all=True, filters={"label": f"dev.bgdeploy.name={self.name}"})
        return {c.name: c.labels.get("dev.bgdeploy.model", "") for c in found}

    def cleanup(self) -> None:
        for engine, host in zip(self.engines, self.hosts, strict=True):
            for container in engine.containers.list(all=True, filters={"label": f"dev.bgdeploy.name={self.name}"}):
                container.remove(force=True)
            for network in engine.networks.list(names=[f"bgdeploy-{self.name}"]):
                network.remove()
            for tag in self.tags:
                with contextlib.suppress(Exception):  # absent on this host (the missing-image test)
                    engine.images.remove(tag)
            shutil.rmtree(Path(host.home) / ".bgdeploy" / self.name, ignore_errors=True)


@pytest.fixture
def fleet(
    testbed: Testbed, fleet_hosts: list[FleetHost], engines: list[Any], tmp_path: Path
) -> Iterator[FleetDeployment]:
    deployment = FleetDeployment(testbed, fleet_hosts, engines, tmp_path)
    yield deployment
    deployment.cleanup()


def _all_live(fleet: FleetDeployment, model: str) -> None:
    ok(fleet.run("deploy", "--json", str(fleet.workdir / "first.json")))
    for i in range(len(fleet.hosts)):
        assert fleet.serving(i) == model


def _traffic(fleet: FleetDeployment) -> list[Traffic]:
    return [Traffic(fleet.url(i), max_seconds=300) for i in range(len(fleet.hosts))]


def _started(traffic: list[Traffic]) -> None:
    """Traffic flows to every host (a few answers each) before the deploy begins."""
    for t in traffic:
        t.__enter__()
    deadline = time.monotonic() + 60
    while any(len(t.answers) < 3 for t in traffic) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_fleet_deploy_moves_every_host_batch_by_batch_with_no_failed_request(fleet: FleetDeployment) -> None:
    v1 = fleet.image("v1")
    fleet.write("acme/chat-v1", v1, first_batch="100%")
    _all_live(fleet, "acme/chat-v1")

    fleet.write("acme/chat-v2", v1, batch=1)
    report = fleet.workdir / "fleet.md"
    traffic = _traffic(fleet)
    _started(traffic)
    try:
        out = ok(fleet.run("deploy", "--json", str(fleet.workdir / "r.json"), "--report", str(report)))
        finished = time.monotonic()
        for t in traffic:  # a few requests more on every host after the deploy returned
            seen = len(t.answers)
            deadline = time.monotonic() + 30
            while len(t.answers) < seen + 5 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        for t in traffic:
            t.__exit__()
    for i, t in enumerate(traffic):
        assert t.failures == [], f"host h{i + 1}: {t.failures[:5]}"
        assert t.models_sent(before=finished) >= {"acme/chat-v1"}, f"host h{i + 1}"
        assert t.models_sent(after=finished) == {"acme/chat-v2"}, f"host h{i + 1}: {t.answers[-10:]}"
    data = json.loads((fleet.workdir / "r.json").read_text())
    assert data["outcome"] == "deployed", out
    assert data["batches"] == [["h1"], ["h2"], ["h3"]]
    assert data["hosts_deployed"] == ["h1", "h2", "h3"] and data["hosts_failed"] == []
    assert [h["before"]["model"] for h in data["hosts"]] == ["acme/chat-v1"] * 3
    for i in range(3):
        assert fleet.serving(i) == "acme/chat-v2"
    assert "| h2 | 2 | acme/chat-v1 \\(blue\\) | acme/chat-v2 \\(green\\) | ✅ deployed | 100% |" in report.read_text()
    # Batch by batch: host 2 started only after host 1 had switched (its lines follow h1's switch).
    assert out.index("h1: switch: all traffic to green") < out.index("h2: start:")
    assert out.index("h2: switch: all traffic to green") < out.index("h3: start:")

    status = ok(fleet.run("status", "--json"))
    data = json.loads(status[: status.rindex("}") + 1])
    assert data["converged"] is True and set(data["releases"].values()) == {"acme/chat-v2"}
    again = ok(fleet.run("deploy"))
    assert "Fleet unchanged" in again


def test_a_failure_beyond_max_failed_hosts_rolls_back_the_switched_hosts_and_leaves_the_rest(
    fleet: FleetDeployment,
) -> None:
    v1 = fleet.image("v1")
    fleet.write("acme/chat-v1", v1, first_batch="100%")
    _all_live(fleet, "acme/chat-v1")
    untouched = fleet.containers(2)

    v2 = fleet.image("v2", broken_on=1)  # host 2 answers wrong: its validation fails
    fleet.write("acme/chat-v2", v2, batch=1, max_failed_hosts=0)
    traffic = _traffic(fleet)
    _started(traffic)
    try:
        out = failed(fleet.run("deploy", "--json", str(fleet.workdir / "r.json")))
    finally:
        for t in traffic:
            t.__exit__()
    for i, t in enumerate(traffic):
        assert t.failures == [], f"host h{i + 1}: {t.failures[:5]}"
    data = json.loads((fleet.workdir / "r.json").read_text())
    outcomes = {h["label"]: h["outcome"] for h in data["hosts"]}
    assert outcomes == {"h1": "rolled-back", "h2": "failed", "h3": "untouched"}, out
    assert "validation of green failed" in data["hosts"][1]["failure"]
    assert data["hosts_failed"] == ["h2"]
    for i in range(3):
        assert fleet.serving(i) == "acme/chat-v1"
    assert fleet.containers(2) == untouched  # host 3 never saw the new release


def test_an_image_missing_on_one_host_blocks_the_deploy_before_any_host_changes(fleet: FleetDeployment) -> None:
    v1 = fleet.image("v1")
    fleet.write("acme/chat-v1", v1, first_batch="100%")
    _all_live(fleet, "acme/chat-v1")
    before = [fleet.containers(i) for i in range(3)]

    v2 = fleet.image("v2", missing_on=1)
    fleet.write("acme/chat-v2", v2, batch=1)
    out = failed(fleet.run("deploy", "--json", str(fleet.workdir / "r.json")))
    data = json.loads((fleet.workdir / "r.json").read_text())
    assert data["outcome"] == "blocked", out
    h2 = data["hosts"][1]
    assert h2["outcome"] == "blocked"
    assert any(f"the image {v2} is not on this host and could not be pulled" in b for b in h2["blockers"]), h2
    assert [h["blockers"] for h in (data["hosts"][0], data["hosts"][2])] == [[], []]
    assert "nothing was changed on any host" in out

    # The GitHub Action says the same: outcome, the failed host in its outputs, the blocker in the summary.
    temp = fleet.workdir / "runner"
    temp.mkdir()
    env = fleet.environ()
    env.pop("BGDEPLOY_SSH_KEY_FILE")
    env.update(
        BGDEPLOY_SSH_KEY=Path(fleet.testbed.key_file).read_text(),
        BGDEPLOY_SPEC=str(fleet.spec_path),
        BGDEPLOY_MODE="deploy",
        GITHUB_ACTIONS="true",
        GITHUB_OUTPUT=str(temp / "output"),
        GITHUB_STEP_SUMMARY=str(temp / "summary"),
        RUNNER_TEMP=str(temp),
        GITHUB_EVENT_NAME="workflow_dispatch",
        GITHUB_REF="refs/heads/main",
    )
    done = subprocess.run(
        [sys.executable, "-m", "bgdeploy", "ci"], capture_output=True, text=True, timeout=240, env=env, cwd=REPO_ROOT
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    lines = (temp / "output").read_text().splitlines()
    given = {lines[i].split("<<")[0]: lines[i + 1] for i in range(len(lines) - 1) if "<<bgdeploy_" in lines[i]}
    assert (given["outcome"], given["hosts-failed"], given["hosts-deployed"]) == ("blocked", "h2", "")
    assert "- **h2**: the image" in (temp / "summary").read_text()
    assert [fleet.containers(i) for i in range(3)] == before
    for i in range(3):
        assert fleet.serving(i) == "acme/chat-v1"


def test_a_fleet_deploy_killed_midway_converges_on_the_next_run(fleet: FleetDeployment) -> None:
    v1 = fleet.image("v1")
    fleet.write("acme/chat-v1", v1, first_batch="100%")
    _all_live(fleet, "acme/chat-v1")

    fleet.write("acme/chat-v2", v1, load_seconds="5", batch=1)
    # Clients on every host through the kill and the converging run: none of them notices either.
    traffic = _traffic(fleet)
    _started(traffic)
    try:
        proc = fleet.start("deploy")
        try:
            # Host 1 has switched and host 2 is loading its new colour: the runner is killed outright.
            deadline = time.monotonic() + 120
            while fleet.status_of(1, "green") != "running" and proc.poll() is None:
                assert time.monotonic() < deadline, "host 2 never started loading"
                time.sleep(0.1)
            proc.kill()
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert [fleet.serving(i) for i in range(3)] == ["acme/chat-v2", "acme/chat-v1", "acme/chat-v1"]
        # The killed run's locks stay behind on every host; the next run removes them and converges.
        out = ok(fleet.run("deploy", "--force-unlock", "--json", str(fleet.workdir / "r.json")))
    finally:
        for t in traffic:
            t.__exit__()
    for i, t in enumerate(traffic):
        # Keep-alive races (nginx closing an idle connection as it is reused) are retried by Traffic, as
        # clients do; anything else is a failed request.
        assert t.failures == [], f"host h{i + 1}: {t.failures[:5]} ({t.retried} keep-alive retries)"
        assert t.sent > 0
    data = json.loads((fleet.workdir / "r.json").read_text())
    outcomes = {h["label"]: h["outcome"] for h in data["hosts"]}
    assert outcomes == {"h1": "unchanged", "h2": "deployed", "h3": "deployed"}, out
    assert [fleet.serving(i) for i in range(3)] == ["acme/chat-v2"] * 3


def test_with_a_canary_strategy_the_first_batch_is_the_canary_and_the_rest_switch_at_once(
    fleet: FleetDeployment,
) -> None:
    v1 = fleet.image("v1")
    fleet.write("acme/chat-v1", v1, first_batch="100%")
    _all_live(fleet, "acme/chat-v1")

    canary = {
        "strategy": "canary",
        "steps": [{"weight": 50, "bake": "3s"}],
        "analysis_interval": "1s",
        "rollback_on": {"min_requests": 1},
    }
    fleet.write("acme/chat-v2", v1, rollout=canary, batch=2)
    traffic = _traffic(fleet)
    _started(traffic)
    try:
        out = ok(fleet.run("deploy", "--json", str(fleet.workdir / "r.json")))
    finally:
        for t in traffic:
            t.__exit__()
    for i, t in enumerate(traffic):
        assert t.failures == [], f"host h{i + 1}: {t.failures[:5]} ({t.retried} keep-alive retries)"
    data = json.loads((fleet.workdir / "r.json").read_text())
    assert data["outcome"] == "deployed", out
    assert data["batches"] == [["h1"], ["h2", "h3"]]
    assert [len(h["result"]["canary"]) for h in data["hosts"]] == [1, 0, 0], out
    assert "h1: canary: step 1/1" in out
    assert "h2: canary:" not in out and "h3: canary:" not in out
    # The canary's fleet gate passed before the second batch started.
    assert out.index("h1: switch: all traffic to green") < out.index("h2: start:")
    assert [fleet.serving(i) for i in range(3)] == ["acme/chat-v2"] * 3
