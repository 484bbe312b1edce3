"""Red-team (issue #9): in container mode nginx resolves a colour's container name when it loads its config.
A live colour that restarts with another address on the Docker network (stopped, its address taken by
another container, started again: a crash loop during a deploy, a dockerd restart) leaves nginx sending every
request to the old address, although the colour is up and healthy. `status` must say so and exit non-zero,
and the next run (even an unchanged deploy) must make nginx serve it again."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.integration.deployments import Deployment, ok

pytestmark = pytest.mark.integration


def _address(container: Any, network: str) -> str:
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


def _healthy_directly(container: Any) -> bool:
    container.reload()
    ports = (container.attrs["NetworkSettings"]["Ports"] or {}).get("8000/tcp") or []
    if not ports:
        return False
    try:
        return httpx.get(f"http://127.0.0.1:{ports[0]['HostPort']}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _through_router(dep: Deployment) -> int:
    try:
        return httpx.get(f"{dep.url}/health", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_a_live_colour_back_at_a_new_address_is_reported_and_repaired(dep: Deployment, docker_client: Any) -> None:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    network = f"bgdeploy-{dep.name}"
    blue = docker_client.containers.get(f"bgdeploy-{dep.name}-blue")
    before = _address(blue, network)

    blue.stop(timeout=5)
    # Something else on the network takes the freed address (Docker hands out the lowest free one).
    docker_client.containers.run(
        dep.testbed.fakevllm_image,
        entrypoint=["sleep", "600"],
        name=f"bgdeploy-{dep.name}-rt9-filler",
        network=network,
        labels={"dev.bgdeploy.name": dep.name},
        detach=True,
    )
    blue.start()
    after = _address(blue, network)
    assert after != before, f"blue came back at its old address {before}; the scenario needs a new one"
    dep.wait_for(lambda: _healthy_directly(blue), 60, "blue to answer on its own port again")

    # nginx still sends requests to the old address: clients fail although blue is up.
    deadline = time.monotonic() + 30
    while _through_router(dep) == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _through_router(dep) != 200

    status = dep.run("status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "ROUTER PROBLEM" in status.stdout, status.stdout

    out = ok(dep.run("deploy"))  # unchanged release: reconcile repairs first
    assert "reconcile: repairing the router first" in out, out
    assert _through_router(dep) == 200
    assert dep.serving_model() == "acme/chat-v1"
    assert dep.run("status").returncode == 0


def test_abort_after_the_old_colour_stopped_starts_it_again_instead_of_removing_everything(
    dep: Deployment, docker_client: Any
) -> None:
    from tests.integration.test_canary import canary

    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    dep.write("acme/chat-v2", rollout=canary([(10, "2s")], auto_promote=False, rollback_on={"min_requests": 1000}))
    ok(dep.run("deploy"))  # paused at 10% (inconclusive: too few requests to judge)
    docker_client.containers.get(f"bgdeploy-{dep.name}-blue").stop(timeout=5)  # the old colour is stopped

    out = ok(dep.run("abort"))
    assert dep.serving_model() == "acme/chat-v1", out
    assert dep.chat().headers["x-bgdeploy-colour"] == "blue"
    assert dep.run("status").returncode == 0
