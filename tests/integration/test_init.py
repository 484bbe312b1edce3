"""`bgdeploy init` against the testbed: the key shown and pinned, the GPUs found (a stand-in nvidia-smi with
a real H200's output), a spec that validates and, with the testbed's images, deploys; never an overwrite."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.integration.conftest import REPO_ROOT, Testbed
from tests.integration.deployments import Deployment, free_port, ok
from tests.integration.test_deploy_failures import fake_nvidia_smi

pytestmark = pytest.mark.integration
__all__ = ["fake_nvidia_smi"]  # the fixture, used by name


def init(dep: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    testbed = dep.testbed
    address = f"{testbed.user}@{testbed.host}:{testbed.port}"
    return subprocess.run(
        [sys.executable, "-m", "bgdeploy", "init", address, "-o", str(dep.spec_path), "--name", dep.name, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dep.environ(),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_init_pins_the_key_finds_the_gpu_and_writes_a_spec_that_deploys(
    dep: Deployment, testbed: Testbed, fake_nvidia_smi: Any
) -> None:
    fake_nvidia_smi("query-gpu-by-uuid.txt")  # an idle one-GPU H200 host
    done = init(dep, "--yes")
    out = ok(done)
    fingerprint = out.split("offers the host key ssh-ed25519 ", 1)[1].split()[0]
    assert fingerprint.startswith("SHA256:") and "key pinned" in out, out
    text = dep.spec_path.read_text()
    assert fingerprint in text and "NVIDIA H200" in text
    spec = yaml.safe_load(text)
    assert spec["target"]["host_key"] == testbed.host_key
    assert (spec["gpus"], spec["runtime"]["gpu_memory_utilization"]) == ({"blue": [0], "green": [0]}, 0.45)
    validated = ok(dep.run("validate"))
    assert "warning" not in validated, validated

    # Never over an existing file, whatever the answer.
    before = dep.spec_path.read_text()
    again = init(dep, "--yes")
    assert again.returncode == 2 and "never overwrites" in again.stderr, again
    assert dep.spec_path.read_text() == before

    # As written, with the testbed's stand-ins for the image and the GPU: a first deploy that serves.
    spec["runtime"].update(image=testbed.fakevllm_image, env={"FAKEVLLM_LOAD_SECONDS": "1"})
    spec["gpus"] = {"blue": [], "green": []}
    spec["router"].update(image=testbed.nginx_image, listen=free_port())
    spec["rollout"]["bake"] = 0
    dep.port = spec["router"]["listen"]
    dep.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    ok(dep.run("deploy"))
    assert dep.chat().status_code == 200


def test_init_asks_for_the_key_and_checks_a_given_one(dep: Deployment, testbed: Testbed) -> None:
    no_terminal = init(dep)
    assert no_terminal.returncode == 2 and "--host-key" in no_terminal.stderr, no_terminal
    wrong = init(dep, "--host-key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfGRy7nL8mj9zCsOYvIaPeU/TV/uHS4zQUvQVaNO2Uf")
    assert wrong.returncode == 1 and "not the --host-key given" in wrong.stderr, wrong
    assert not dep.spec_path.exists()
    right = init(dep, "--host-key", testbed.host_key)
    ok(right)
    assert yaml.safe_load(dep.spec_path.read_text())["target"]["host_key"] == testbed.host_key


def test_init_asks_on_a_terminal_whether_the_model_is_gated(dep: Deployment, testbed: Testbed) -> None:
    address = f"{testbed.user}@{testbed.host}:{testbed.port}"
    argv = [sys.executable, "-m", "bgdeploy", "init", address, "-o", str(dep.spec_path), "--name", dep.name]
    argv += ["--host-key", testbed.host_key, "--model", "acme/private-model"]
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dep.environ(),
            cwd=REPO_ROOT,
        )
        os.write(primary, b"y\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 0, (out, err)
    assert "Does acme/private-model need a Hugging Face token" in err
    assert yaml.safe_load(dep.spec_path.read_text())["runtime"]["secret_env"] == ["HF_TOKEN"]
