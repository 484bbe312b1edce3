"""Fixtures for the integration tests: the testbed made by `scripts/testbed up`.

The testbed is described by BGDEPLOY_TESTBED_* and BGDEPLOY_SSH_KEY_FILE environment variables
(`eval "$(scripts/testbed env)"`); when they are missing, `scripts/testbed env` is asked. Without
a reachable testbed the tests are skipped, except under CI=true, where that is a failure: CI must
never pass by skipping.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_NAMES = (
    "BGDEPLOY_TESTBED_HOST",
    "BGDEPLOY_TESTBED_PORT",
    "BGDEPLOY_TESTBED_USER",
    "BGDEPLOY_SSH_KEY_FILE",
    "BGDEPLOY_TESTBED_HOST_KEY",
    "BGDEPLOY_TESTBED_FAKEVLLM_IMAGE",
    "BGDEPLOY_TESTBED_NGINX_IMAGE",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs real sockets, and most need the testbed (scripts/testbed up)"
    )


@dataclass(frozen=True)
class Testbed:
    __test__ = False  # not a test class, despite the name

    host: str
    port: int
    user: str
    key_file: str
    host_key: str  # "ssh-ed25519 AAAA..."
    fakevllm_image: str
    nginx_image: str


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"testbed unavailable: {reason} (CI=true: run scripts/testbed up first)", pytrace=False)
    pytest.skip(f"testbed unavailable: {reason}; run: scripts/testbed up")


def _read_env() -> dict[str, str]:
    given = {name: os.environ[name] for name in ENV_NAMES if os.environ.get(name)}
    if len(given) == len(ENV_NAMES):
        return given
    try:
        result = subprocess.run(
            [str(REPO_ROOT / "scripts" / "testbed"), "env"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        unavailable(f"`scripts/testbed env` did not run: {exc}")
    if result.returncode != 0:
        unavailable(f"`scripts/testbed env` failed: {result.stderr.strip()}")
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            found[name] = value
    merged = {**found, **given}  # what the environment says wins
    missing = [name for name in ENV_NAMES if not merged.get(name)]
    if missing:
        unavailable(f"missing {', '.join(missing)}")
    return merged


def _ssh_banner(host: str, port: int) -> str | None:
    """None when an SSH server answers at host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.settimeout(5)
            banner = sock.recv(64)
    except OSError as exc:
        return f"no SSH server at {host}:{port} ({exc})"
    if not banner.startswith(b"SSH-2.0-"):
        return f"{host}:{port} does not speak SSH (it said {banner[:20]!r})"
    return None


@pytest.fixture(scope="session")
def testbed() -> Testbed:
    env = _read_env()
    bed = Testbed(
        host=env["BGDEPLOY_TESTBED_HOST"],
        port=int(env["BGDEPLOY_TESTBED_PORT"]),
        user=env["BGDEPLOY_TESTBED_USER"],
        key_file=env["BGDEPLOY_SSH_KEY_FILE"],
        host_key=env["BGDEPLOY_TESTBED_HOST_KEY"],
        fakevllm_image=env["BGDEPLOY_TESTBED_FAKEVLLM_IMAGE"],
        nginx_image=env["BGDEPLOY_TESTBED_NGINX_IMAGE"],
    )
    if not bed.host.startswith("127."):
        pytest.fail(f"BGDEPLOY_TESTBED_HOST={bed.host}: tests only talk to loopback", pytrace=False)
    problem = _ssh_banner(bed.host, bed.port)
    if problem:
        unavailable(problem)
    if not os.access(bed.key_file, os.R_OK):
        unavailable(f"cannot read the SSH key {bed.key_file}")
    return bed


@pytest.fixture(scope="session")
def docker_client(testbed: Testbed) -> Iterator[Any]:
    """The local engine (docker.from_env), with the testbed's images present."""
    import docker  # here, so that a missing package is reported like a missing testbed

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        unavailable(f"no Docker engine: {exc}")
    for image in (testbed.fakevllm_image, testbed.nginx_image):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            unavailable(f"image {image} is missing")
    yield client
    client.close()


@pytest.fixture
def dep(testbed: Testbed, docker_client: Any, tmp_path: Path) -> Iterator[Any]:
    """A deployment with its own name and router port, everything of it removed afterwards."""
    from tests.integration.deployments import Deployment  # here: deployments imports this module

    deployment = Deployment(testbed, tmp_path, docker_client)
    yield deployment
    deployment.cleanup()
