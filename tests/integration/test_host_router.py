"""router.mode: host with transport: local (a self-hosted runner on the GPU host): the host's own nginx,
bgdeploy owning one include file; and an `nginx -t` failure that must leave the old config in place."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO_ROOT, Testbed, unavailable
from tests.integration.deployments import Deployment, Traffic, failed, ok, switched

pytestmark = pytest.mark.integration


def nginx_running() -> bool:
    """The host's own nginx master, from its pid file (router containers' nginx processes are visible too)."""
    try:
        pid = int(Path("/run/nginx.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    return Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def host_nginx() -> Iterator[None]:
    """The host's nginx from Debian's package, started if it is not running (and stopped again then)."""
    if shutil.which("nginx") is None:
        unavailable("nginx is not installed (scripts/testbed up installs it)")
    started = False
    if not nginx_running():
        done = subprocess.run(["nginx"], capture_output=True, text=True, check=False, timeout=30)
        if done.returncode != 0:
            unavailable(f"the host's nginx did not start: {done.stderr.strip()}")
        started = True
    yield
    if started:
        subprocess.run(["nginx", "-s", "quit"], check=False, timeout=30)


class LocalDeployment(Deployment):
    def spec(self, model: str = "acme/chat-v1", env: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        data = super().spec(model, env, **extra)
        data["target"] = {"transport": "local"}
        data["router"] = {"mode": "host", "listen": self.port, "bind": "127.0.0.1"}
        return data

    @property
    def include(self) -> Path:
        return Path(f"/etc/nginx/conf.d/bgdeploy-{self.name}.conf")

    def state_dir(self) -> Path:
        return Path.home() / ".bgdeploy" / self.name

    def cleanup(self) -> None:
        super().cleanup()
        for path in Path("/etc/nginx/conf.d").glob(f"*{self.name}*"):
            path.unlink()
        subprocess.run(["nginx", "-s", "reload"], check=False, timeout=30)


@pytest.fixture
def local(testbed: Testbed, docker_client: Any, tmp_path: Path, host_nginx: None) -> Iterator[LocalDeployment]:
    deployment = LocalDeployment(testbed, tmp_path, docker_client)
    yield deployment
    deployment.cleanup()


def test_host_nginx_switches_without_dropping_a_request(local: LocalDeployment) -> None:
    local.write("acme/chat-v1")
    ok(local.run("deploy"))
    assert local.include.read_text().startswith(f"# managed by bgdeploy for deployment {local.name}")
    assert local.serving_model() == "acme/chat-v1"
    local.write("acme/chat-v2")
    with Traffic(local.url) as traffic:
        local.wait_for(lambda: len(traffic.models) >= 10, 30, "traffic to flow")
        switched(traffic, lambda: ok(local.run("deploy")), "acme/chat-v1", "acme/chat-v2")
    assert traffic.failures == [], traffic.failures[:5]
    ok(local.run("rollback"))
    assert local.serving_model() == "acme/chat-v1"


def test_nginx_t_failure_restores_the_old_config_and_blue_keeps_serving(local: LocalDeployment) -> None:
    local.write("acme/chat-v1")
    ok(local.run("deploy"))
    before = local.include.read_text()
    # Someone else's file defines the upstream the next config needs: `nginx -t` will refuse the new config.
    conflict = Path(f"/etc/nginx/conf.d/zz-conflict-{local.name}.conf")
    conflict.write_text(f"upstream bgdeploy_{local.name}_green {{ server 127.0.0.1:9; }}\n")
    local.write("acme/chat-v2")
    out = failed(local.run("deploy"))
    assert "nginx -t refused the new router config, so the old one was restored" in out
    assert 'duplicate upstream "bgdeploy_' in out
    assert local.include.read_text() == before
    assert local.serving_model() == "acme/chat-v1"
    assert local.container_status("green") == "absent"


INCLUDE_DIR = Path("/etc/nginx/bgdeploy-testbed.d")  # made by scripts/testbed, owned by the SSH user


class SshHostRouter(Deployment):
    """router.mode: host over SSH, as on a real GPU host: the deploy user owns one include file and runs
    `nginx -t` / `nginx -s reload` through `sudo -n` (the testbed's sudoers rule allows nginx only)."""

    @property
    def include(self) -> Path:
        return INCLUDE_DIR / f"bgdeploy-{self.name}.conf"

    def spec(self, model: str = "acme/chat-v1", env: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        data = super().spec(model, env, **extra)
        data["router"] = {
            "mode": "host",
            "sudo": True,
            "config_path": str(self.include),
            "listen": self.port,
            "bind": "127.0.0.1",
        }
        return data

    def cleanup(self) -> None:
        super().cleanup()
        self.include.unlink(missing_ok=True)
        subprocess.run(["nginx", "-s", "reload"], check=False, timeout=30)


def test_host_nginx_over_ssh_with_sudo(testbed: Testbed, docker_client: Any, tmp_path: Path, host_nginx: None) -> None:
    if not INCLUDE_DIR.is_dir():
        unavailable(f"{INCLUDE_DIR} is missing: run scripts/testbed up")
    dep = SshHostRouter(testbed, tmp_path, docker_client)
    try:
        dep.write("acme/chat-v1")
        ok(dep.run("deploy"))
        assert dep.include.stat().st_uid != 0, "written over SFTP by the deploy user, not root"
        assert dep.serving_model() == "acme/chat-v1"
        dep.write("acme/chat-v2")
        with Traffic(dep.url) as traffic:
            dep.wait_for(lambda: len(traffic.models) >= 10, 30, "traffic to flow")
            switched(traffic, lambda: ok(dep.run("deploy")), "acme/chat-v1", "acme/chat-v2")
        assert traffic.failures == [], traffic.failures[:5]
    finally:
        dep.cleanup()


def _served_again(dep: LocalDeployment, model: str, timeout: float = 150) -> float:
    """Seconds until the router answers with `model` again (polled; no bgdeploy command runs meanwhile)."""
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < timeout:
        try:
            response = dep.chat(timeout=10)
            if response.status_code == 200 and response.headers.get("x-model") == model:
                return time.monotonic() - start
            last = f"HTTP {response.status_code}"
        except Exception as exc:  # connection refused while the colour restarts
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise AssertionError(f"the router did not serve {model} again within {timeout:.0f} s (last: {last})")


def _restart_dockerd() -> None:
    """Stop the testbed's dockerd (SIGTERM: every container stops) and bring it back as scripts/test does."""
    pid_file = Path(os.environ.get("BGDEPLOY_TESTBED_DIR", "/var/lib/bgdeploy-testbed")) / "dockerd.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        unavailable(f"dockerd was not started by the testbed ({pid_file} is missing); cannot restart it")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 90
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run(
        [str(REPO_ROOT / "scripts" / "testbed"), "up", "--hosts", "3"], check=True, timeout=300, capture_output=True
    )


def test_host_mode_serves_again_after_the_live_container_and_dockerd_restart(local: LocalDeployment) -> None:
    # Host mode publishes a fixed host port per colour, chosen at its first start and recorded in its labels:
    # after the colour restarts, or dockerd does (which stops every container; unless-stopped starts them
    # again), Docker binds the same port, so the host's nginx reaches the colour again with no bgdeploy run.
    local.write("acme/chat-v1")
    ok(local.run("deploy"))
    live = [
        c
        for c in local.docker.containers.list()
        if c.name in (f"bgdeploy-{local.name}-blue", f"bgdeploy-{local.name}-green")
    ]
    assert len(live) == 1, [c.name for c in live]
    ports_before = live[0].attrs["HostConfig"]["PortBindings"]
    live[0].restart(timeout=10)
    _served_again(local, "acme/chat-v1")
    _restart_dockerd()
    _served_again(local, "acme/chat-v1")
    live[0].reload()
    assert live[0].attrs["HostConfig"]["PortBindings"] == ports_before
    status = ok(local.run("status"))  # nothing for reconcile to repair: the include still names the right port
    assert "ROUTER PROBLEM" not in status
