"""Warnings about valid specs that will probably not do what their author wants; never errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bgdeploy.spec import load_spec
from bgdeploy.spec.lint import LintWarning, lint, tensor_parallel_size

BASE: dict[str, Any] = {
    "version": 1,
    "name": "chat",
    "target": {
        "host": "gpu-1",
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfGRy7nL8mj9zCsOYvIaPeU/TV/uHS4zQUvQVaNO2Uf",
    },
    "model": {"name": "Qwen/Qwen2.5-7B-Instruct"},
    "runtime": {"image": "vllm/vllm-openai:v0.9.2", "volumes": ["/srv/hf-cache:/root/.cache/huggingface"]},
    "validation": {"prompts": [{"name": "capital", "chat": "Capital of France?", "expect": {"contains": "Paris"}}]},
    "rollout": {"smoke": ["capital"]},
}


def warnings(tmp_path: Path, **changes: Any) -> list[LintWarning]:
    data = {**BASE, **changes}
    path = tmp_path / "bluegreen.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_spec(str(path))
    return lint(loaded.spec, loaded.located)


def test_a_careful_spec_has_no_warning(tmp_path: Path) -> None:
    assert warnings(tmp_path) == []


def test_no_prompts_and_no_smoke(tmp_path: Path) -> None:
    (none,) = warnings(tmp_path, validation={"prompts": []}, rollout={})
    assert none.path == "validation" and "no validation prompts" in none.message
    (smoke,) = warnings(tmp_path, rollout={})
    assert "rollout.smoke" in smoke.message and "smoke: [capital]" in smoke.message


def test_tensor_parallel_size_against_the_gpus(tmp_path: Path) -> None:
    runtime = {**BASE["runtime"], "args": ["--tensor-parallel-size", "2"]}
    (tp,) = warnings(tmp_path, runtime=runtime, gpus={"blue": [0], "green": [1]})
    assert "--tensor-parallel-size 2 but gpus.blue gives 1 GPU(s)" in tp.message
    assert tp.path == "runtime.args" and (tp.line, tp.column) > (1, 1)
    assert warnings(tmp_path, runtime=runtime, gpus={"blue": [0, 1], "green": [2, 3]}) == []
    (idle,) = warnings(tmp_path, gpus={"blue": [0, 1], "green": [2, 3]})
    assert "no --tensor-parallel-size" in idle.message


@pytest.mark.parametrize(
    ("args", "size"),
    [(["--tensor-parallel-size", "4"], 4), (["--tensor-parallel-size=2"], 2), (["-tp", "8"], 8), (["--x"], None)],
)
def test_tensor_parallel_size_spellings(args: list[str], size: int | None) -> None:
    assert tensor_parallel_size(args) == size


def test_a_gated_model_without_a_token_and_no_cache(tmp_path: Path) -> None:
    found = warnings(
        tmp_path, model={"name": "meta-llama/Llama-3.1-8B-Instruct"}, runtime={"image": "vllm/vllm-openai:v0.9.2"}
    )
    assert [w.path for w in found] == ["model.name", "runtime.volumes"]
    assert any("runtime.secret_env: [HF_TOKEN]" in w.message for w in found)
    assert any("/srv/hf-cache:/root/.cache/huggingface" in w.message for w in found)
    runtime = {**BASE["runtime"], "secret_env": ["HF_TOKEN"]}
    assert warnings(tmp_path, model={"name": "meta-llama/Llama-3.1-8B-Instruct"}, runtime=runtime) == []


def test_a_cache_under_hf_home_counts(tmp_path: Path) -> None:
    runtime = {"image": "vllm/vllm-openai:v0.9.2", "env": {"HF_HOME": "/cache/hf"}, "volumes": ["/srv/hf:/cache"]}
    assert warnings(tmp_path, runtime=runtime) == []


def test_validate_prints_warnings_and_still_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bgdeploy.cli import main

    path = tmp_path / "bluegreen.yaml"
    path.write_text(yaml.safe_dump({**BASE, "rollout": {}}, sort_keys=False))
    assert main(["validate", "-f", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"{path}:" in err and ": warning: rollout: no rollout.smoke" in err
