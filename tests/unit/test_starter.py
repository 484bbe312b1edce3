"""The starter spec `bgdeploy init` writes: it validates, with no warning, for any GPU count."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bgdeploy.onboarding.starter import HostFacts, looks_gated, render
from bgdeploy.plan.gpu import Gpu
from bgdeploy.spec import load_spec
from bgdeploy.spec.lint import lint

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfGRy7nL8mj9zCsOYvIaPeU/TV/uHS4zQUvQVaNO2Uf"


def h200(index: int) -> Gpu:
    return Gpu(index=index, uuid=f"GPU-{index}", name="NVIDIA H200", total_mib=143771, used_mib=0, free_mib=143771)


@pytest.mark.parametrize(
    ("gpus", "blue", "green", "util"),
    [((), [], [], 0.45), ((h200(0),), [0], [0], 0.45), ((h200(0), h200(1)), [0], [1], 0.9)],
)
def test_the_starter_spec_validates_without_a_warning(
    tmp_path: Path, gpus: tuple[Gpu, ...], blue: list[int], green: list[int], util: float
) -> None:
    facts = HostFacts("gpu-1", 22, "deploy", KEY, "SHA256:x", gpus=gpus, docker_version="27.0", nvidia_runtime=True)
    path = tmp_path / "bluegreen.yaml"
    path.write_text(render(facts, name="chat", model="Qwen/Qwen2.5-7B-Instruct", gated=False))
    loaded = load_spec(str(path))
    assert lint(loaded.spec, loaded.located) == []
    data = yaml.safe_load(path.read_text())
    assert (data["gpus"]["blue"], data["gpus"]["green"], data["runtime"]["gpu_memory_utilization"]) == (
        blue,
        green,
        util,
    )
    assert data["target"]["host_key"] == KEY


def test_a_gated_model_gets_the_token() -> None:
    assert looks_gated("meta-llama/Llama-3.1-8B-Instruct") and not looks_gated("Qwen/Qwen2.5-7B-Instruct")
    facts = HostFacts("gpu-1", 22, "deploy", KEY, "SHA256:x")
    text = render(facts, name="chat", model="meta-llama/Llama-3.1-8B-Instruct", gated=True)
    assert yaml.safe_load(text)["runtime"]["secret_env"] == ["HF_TOKEN"]
