"""target.jump: the whole SSH session (commands, files, the Docker API, port forwards) carried through a
bastion, both host keys pinned. The bastion is a second sshd started here, with the testbed's own config on
another loopback port, logging every login: the deploy must log in there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import REPO_ROOT, Testbed, unavailable
from tests.integration.deployments import Deployment, free_port, ok

pytestmark = pytest.mark.integration

OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfGRy7nL8mj9zCsOYvIaPeU/TV/uHS4zQUvQVaNO2Uf"


@pytest.fixture
def bastion(testbed: Testbed, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A second sshd on 127.0.0.1 (a free port): the jump host. Yields its port and its log file."""
    config = Path(os.environ.get("BGDEPLOY_TESTBED_DIR", "/var/lib/bgdeploy-testbed")) / "ssh" / "sshd_config"
    if os.geteuid() != 0 or not config.exists():
        unavailable(f"the jump host needs root and the testbed's {config}")
    port = free_port()
    log = tmp_path / "bastion.log"
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config), "-o", f"Port={port}", "-o", f"PidFile={tmp_path}/sshd.pid"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    try:
        deadline = time.monotonic() + 30
        while "Server listening" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                unavailable(f"the jump host's sshd did not start: {log.read_text()[-500:]}")
            time.sleep(0.1)
        yield port, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_deploy_through_a_jump_host(dep: Deployment, testbed: Testbed, bastion: tuple[int, Path]) -> None:
    port, log = bastion
    jump = {"host": "127.0.0.1", "port": port, "user": testbed.user, "host_key": testbed.host_key}
    dep.write("acme/chat-v1", target={"jump": jump})
    out = ok(dep.run("deploy"))
    assert f"via {testbed.user}@127.0.0.1:{port}" in out, out
    assert dep.serving_model() == "acme/chat-v1"
    assert "Accepted publickey for " + testbed.user in log.read_text(), "the session went through the jump host"
    status = ok(dep.run("status"))
    assert "acme/chat-v1" in status


def test_the_jump_hosts_key_is_pinned_too(dep: Deployment, testbed: Testbed, bastion: tuple[int, Path]) -> None:
    port, _ = bastion
    dep.write(target={"jump": {"host": "127.0.0.1", "port": port, "host_key": OTHER_KEY}})
    done = dep.run("plan")
    assert done.returncode == 1, done
    assert f"jump host 127.0.0.1:{port}" in done.stderr and "target.jump.host_key" in done.stderr, done.stderr


def test_init_list_and_remove_through_the_jump_host(
    dep: Deployment, testbed: Testbed, bastion: tuple[int, Path]
) -> None:
    port, log = bastion
    address = f"{testbed.user}@{testbed.host}:{testbed.port}"
    jump = ["--jump", f"{testbed.user}@127.0.0.1:{port}", "--jump-host-key", testbed.host_key]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bgdeploy",
            "init",
            address,
            "-o",
            str(dep.spec_path),
            "--name",
            dep.name,
            "--yes",
            *jump,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dep.environ(),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert "key pinned" in ok(done)
    written = yaml.safe_load(dep.spec_path.read_text())["target"]
    assert written["host_key"] == testbed.host_key, written
    assert written["jump"] == {"host": "127.0.0.1", "port": port, "user": testbed.user, "host_key": testbed.host_key}
    logins = log.read_text().count("Accepted publickey for " + testbed.user)
    assert logins >= 2, "init read the host's key and its facts through the jump host"

    spec_jump = {"host": "127.0.0.1", "port": port, "user": testbed.user, "host_key": testbed.host_key}
    dep.write("acme/chat-v1", target={"jump": spec_jump})
    ok(dep.run("deploy"))
    listed = json.loads(ok(dep.run("list", "--host", address, "--host-key", testbed.host_key, *jump, "--json")))
    assert f"via {testbed.user}@127.0.0.1:{port}" in listed["host"], listed["host"]
    assert dep.name in {row["name"] for row in listed["deployments"]}
    refused = dep.run("list", "--host", address, "--host-key", testbed.host_key, "--jump", f"127.0.0.1:{port}")
    assert refused.returncode == 2 and "--jump-host-key" in refused.stderr, refused

    before = log.read_text().count("Accepted publickey for ")
    ok(dep.run("remove", "--yes"))
    assert log.read_text().count("Accepted publickey for ") > before, "remove went through the spec's target.jump"
    assert dep.docker.containers.list(all=True, filters={"label": f"dev.bgdeploy.name={dep.name}"}) == []
