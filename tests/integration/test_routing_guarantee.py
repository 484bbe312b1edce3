"""The routing guarantee on the testbed: each colour is reached on its own release's port, a router
pointing at a dead colour is reported by `status` and repaired by the next command, and a changed
router.image is rolled out."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.deployments import Deployment, Traffic, failed, ok
from tests.integration.test_host_router import LocalDeployment, host_nginx, local

pytestmark = pytest.mark.integration


def test_rollback_after_a_runtime_port_change_reaches_each_colour_on_its_own_port(dep: Deployment) -> None:
    dep.write("acme/chat-v1", rollout={"keep_previous": "stopped"})  # v1 listens on 8000 (the default)
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2", runtime={"port": 8001}, rollout={"keep_previous": "stopped"})
    ok(dep.run("deploy"))
    assert dep.serving_model() == "acme/chat-v2"
    with Traffic(dep.url) as traffic:
        dep.wait_for(lambda: len(traffic.models) >= 5, 30, "traffic to flow")
        out = ok(dep.run("rollback"))  # the spec still says 8001; blue's release listens on 8000
        dep.wait_for(lambda: traffic.models[-1:] == ["acme/chat-v1"], 30, "v1 to answer")
    assert traffic.failures == [], traffic.failures[:5]
    assert "rolled back" in out.lower() or "rolled-back" in out.lower() or dep.serving_model() == "acme/chat-v1"
    assert dep.serving_model() == "acme/chat-v1"


def test_status_reports_a_router_pointing_at_a_dead_colour_and_the_next_deploy_repairs_it_first(
    dep: Deployment, docker_client: Any
) -> None:
    dep.write("acme/chat-v1", rollout={"keep_previous": "running"})
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2", rollout={"keep_previous": "running"})
    ok(dep.run("deploy"))
    docker_client.containers.get(f"bgdeploy-{dep.name}-green").stop(timeout=5)  # the live colour dies

    status = dep.run("status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "ROUTER PROBLEM: the router sends traffic to green, whose container is not running" in status.stdout

    out = ok(dep.run("deploy"))  # repairs to blue (still running) first, then deploys v2 again
    assert "reconcile: repairing the router first: blue 100%" in out
    assert dep.serving_model() == "acme/chat-v2"
    assert dep.run("status").returncode == 0


def test_a_changed_router_image_is_rolled_out(dep: Deployment, docker_client: Any) -> None:
    image = docker_client.images.get(dep.testbed.nginx_image)
    other = f"bgdeploy-test/nginx:h9r-{dep.name}"
    image.tag(other)
    try:
        dep.write("acme/chat-v1")
        ok(dep.run("deploy"))
        dep.write("acme/chat-v1", router={"image": other})
        out = ok(dep.run("deploy"))
        assert "router: settings changed (image" in out
        router = docker_client.containers.get(f"bgdeploy-{dep.name}-router")
        assert router.attrs["Config"]["Image"] == other
        assert dep.serving_model() == "acme/chat-v1"
        assert dep.run("status").returncode == 0
    finally:
        dep.cleanup()
        docker_client.images.remove(other, noprune=True)


def test_host_mode_serves_again_after_the_live_container_restarts_without_any_bgdeploy_run(
    local: LocalDeployment, docker_client: Any
) -> None:
    local.write("acme/chat-v1")
    ok(local.run("deploy"))
    blue = docker_client.containers.get(f"bgdeploy-{local.name}-blue")
    port_before = blue.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
    assert blue.labels["dev.bgdeploy.host-port"] == port_before
    blue.restart(timeout=5)
    blue.reload()
    assert blue.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"] == port_before

    def served() -> bool:
        try:
            return local.chat(timeout=5).status_code == 200
        except Exception:
            return False

    local.wait_for(served, 60, "the restarted blue to answer through the host's nginx")
    assert local.run("status").returncode == 0


def test_two_host_mode_deployments_cannot_claim_one_port(local: LocalDeployment, testbed: Any, tmp_path: Any) -> None:
    local.write("acme/chat-v1")
    ok(local.run("deploy"))
    second = LocalDeployment(testbed, tmp_path / "second", local.docker)
    second.workdir.mkdir()
    second.port = local.port
    try:
        second.write("acme/chat-v1")
        out = failed(second.run("deploy"))
        assert f"deployment {local.name} already answers on 127.0.0.1:{local.port}" in out
        assert local.serving_model() == "acme/chat-v1"
    finally:
        second.cleanup()


__all__ = ["host_nginx", "local"]  # fixtures used here
