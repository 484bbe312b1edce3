"""The host policy against the real testbed: a root-owned policy file in a directory of this test's own
(BGDEPLOY_POLICY points there, so other deployments on the shared host are unaffected), read over the same
SSH connection as the deploy user `bgdeploy`."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import unavailable
from tests.integration.deployments import Deployment, ok

pytestmark = pytest.mark.integration

ROOT = Path("/var/lib/bgdeploy-policy-tests")


@pytest.fixture
def policy_file() -> Iterator[Path]:
    """A root-owned policy path (root:root, 0755 directories, 0644 file) that only this test uses."""
    if os.geteuid() != 0:
        unavailable("the policy tests write a root-owned file: run them as root, as CI does")
    ROOT.mkdir(mode=0o755, exist_ok=True)
    os.chown(ROOT, 0, 0)
    ROOT.chmod(0o755)
    directory = ROOT / uuid.uuid4().hex[:12]
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    try:
        yield directory / "policy.yaml"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def install(path: Path, policy: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    os.chown(path, 0, 0)
    path.chmod(0o644)


def with_policy(dep: Deployment, path: Path) -> None:
    base = dep.environ

    def environ() -> dict[str, str]:
        return {**base(), "BGDEPLOY_POLICY": str(path)}

    dep.environ = environ  # type: ignore[method-assign]


def refused(done: Any) -> str:
    assert done.returncode == 2, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return str(done.stdout + done.stderr)


def containers_of(dep: Deployment) -> list[str]:
    found = dep.docker.containers.list(all=True, filters={"label": f"dev.bgdeploy.name={dep.name}"})
    return [c.name for c in found]


POLICY: dict[str, Any] = {
    "version": 1,
    "images": ["vllm/vllm-openai:*"],
    "names": ["pol-*"],
    "volumes": [{"host": "/srv/hf-cache", "mode": "rw"}],
    "env_deny": ["LD_*", "PYTHONPATH"],
    "gpus": [0],
    "command_override": False,
    "router": {"modes": ["container"], "config_paths": [], "listen": [80]},
}


def test_a_spec_that_breaks_the_policy_is_refused_with_every_violation_and_nothing_created(
    dep: Deployment, policy_file: Path
) -> None:
    install(policy_file, POLICY)
    with_policy(dep, policy_file)
    dep.write(
        runtime={
            "image": "attacker.example/rootkit",
            "volumes": ["/:/host", "/var/run/docker.sock:/var/run/docker.sock"],
            "env": {"FAKEVLLM_LOAD_SECONDS": "1", "LD_PRELOAD": "/host/evil.so"},
        },
        gpus={"blue": [0, 1, 2, 3], "green": [0, 1, 2, 3]},
        router={"mode": "host", "config_path": "/etc/resolv.conf", "listen": dep.port},
    )
    spec = str(dep.spec_path)
    report = dep.workdir / "report.md"
    for command in ("deploy", "rollback"):
        out = refused(dep.run(command, "--report", str(report)))
        for where in (
            "name: the deployment name",
            "runtime.image: the image attacker.example/rootkit is not allowed",
            "runtime.volumes[0]: mounting / is not allowed",
            "runtime.volumes[1]: mounting /var/run/docker.sock is not allowed",
            "runtime.env.LD_PRELOAD: setting LD_PRELOAD is denied",
            "gpus.blue: GPU 1, 2, 3 may not be used",
            "gpus.green: GPU 1, 2, 3 may not be used",
            "router.mode: router mode host is not allowed",
            "router.config_path: /etc/resolv.conf may not be written",
            f"router.listen: port {dep.port} is not allowed",
        ):
            assert any(line.startswith(f"{spec}:") and where in line for line in out.splitlines()), (where, out)
        assert f"10 host policy violations ({policy_file}); nothing was changed" in out
        markdown = report.read_text()  # what the PR comment shows: every violation, located
        assert f"**Host policy**: refused by the host policy {policy_file}: 10 violations" in markdown
        assert markdown.count("\n| ") >= 12 and "| runtime.env.LD\\_PRELOAD |" in markdown, markdown
    assert containers_of(dep) == [], "nothing may be created before the policy allows it"
    assert not dep.state_dir().exists(), "not even the lock or the state directory"
    plan = dep.run("plan")
    assert plan.returncode == 1
    assert f"policy: refused by the host policy {policy_file}: 10 violations" in plan.stdout
    located = re.compile(rf"^policy: {re.escape(spec)}:\d+:\d+: runtime\.image: the image attacker", re.M)
    assert located.search(plan.stdout), plan.stdout


def test_a_policy_the_deploy_user_can_write_is_refused(dep: Deployment, policy_file: Path) -> None:
    install(policy_file, {**POLICY, "names": [dep.name]})
    with_policy(dep, policy_file)
    dep.write()
    policy_file.chmod(0o666)
    out = refused(dep.run("deploy"))
    assert "is refused because the deploy user could change it" in out
    assert f"the deploy user can write {policy_file}" in out and "chmod 644" in out
    shutil.chown(policy_file, dep.testbed.user, dep.testbed.user)
    policy_file.chmod(0o444)  # read-only, but its owner can chmod it
    assert "the deploy user can write" in refused(dep.run("deploy"))
    install(policy_file, {**POLICY, "names": [dep.name]})
    policy_file.parent.chmod(0o777)  # the file is fine, but it can be replaced
    assert f"the deploy user can replace entries in {policy_file.parent}" in refused(dep.run("deploy"))
    assert containers_of(dep) == []


def test_an_allowed_spec_deploys_by_image_id_and_plan_shows_the_verdict(dep: Deployment, policy_file: Path) -> None:
    server = dep.docker.images.get(dep.testbed.fakevllm_image).id
    router = dep.docker.images.get(dep.testbed.nginx_image).id
    install(
        policy_file,
        {
            "version": 1,
            "images": [server],
            "require_digest": True,
            "names": [dep.name],
            "volumes": [],
            "gpus": [],
            "router": {"images": [router], "listen": [dep.port], "binds": ["127.0.0.1"]},
        },
    )
    with_policy(dep, policy_file)
    dep.write(runtime={"image": server}, router={"image": router})
    assert f"policy: allowed by the host policy {policy_file}" in ok(dep.run("plan"))
    ok(dep.run("deploy"))
    assert dep.serving_model() == "acme/chat-v1"
    assert dep.docker.containers.get(f"bgdeploy-{dep.name}-blue").image.id == server
    # The same spec without a digest is refused before anything changes: blue still serves.
    dep.write(model="acme/chat-v2", runtime={"image": dep.testbed.fakevllm_image}, router={"image": router})
    out = refused(dep.run("deploy"))
    assert "requires images pinned by digest" in out
    assert dep.serving_model() == "acme/chat-v1"


def test_without_a_policy_plan_and_deploy_warn_that_anything_can_run(dep: Deployment, policy_file: Path) -> None:
    with_policy(dep, policy_file)  # the path exists nowhere
    dep.write()
    out = ok(dep.run("plan"))
    assert f"no host policy at {policy_file}: any spec that reaches this host can run any image" in out
