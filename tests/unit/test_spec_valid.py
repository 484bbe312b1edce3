"""Valid specs load with the documented defaults; every example validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgdeploy.spec import load_spec
from tests.unit.conftest import MINIMAL, load

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_minimal_spec_gets_single_gpu_defaults() -> None:
    spec = load(MINIMAL).spec
    assert spec.gpus.blue == [0] and spec.gpus.green == [0]
    assert spec.runtime.gpu_memory_utilization == 0.45
    assert spec.runtime.port == 8000
    assert spec.model.effective_served_name == "meta-llama/Llama-3.1-8B-Instruct"
    assert spec.health.ready_timeout == 900.0
    assert spec.rollout.strategy == "all-at-once"
    assert spec.rollout.drain_timeout == 120.0
    assert spec.router.mode == "container" and spec.router.listen == 80
    assert spec.target.transport == "ssh" and spec.target.port == 22


def test_examples_exist_and_cover_the_documented_cases() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"single-gpu.yaml", "multi-gpu.yaml", "canary.yaml", "custom-server.yaml", "self-hosted.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    load_spec(str(path))


def test_durations_accept_units_and_plain_seconds() -> None:
    text = MINIMAL + "health: {interval: 500ms, timeout: 30, ready_timeout: 1h}\nrollout: {bake: 1.5m}\n"
    spec = load(text).spec
    assert spec.health.interval == 0.5
    assert spec.health.timeout == 30.0
    assert spec.health.ready_timeout == 3600.0
    assert spec.rollout.bake == 90.0


def test_single_strings_are_accepted_where_lists_are_expected() -> None:
    text = MINIMAL + "validation:\n  prompts:\n    - {name: a, chat: hi, expect: {contains: Paris}}\n"
    assert load(text).spec.validation.prompts[0].expect.contains == ["Paris"]


def test_env_numbers_become_strings() -> None:
    spec = load(MINIMAL + "  env: {OMP_NUM_THREADS: 4}\n").spec
    assert spec.runtime.env == {"OMP_NUM_THREADS": "4"}


def test_local_transport_needs_no_host_or_key() -> None:
    text = "version: 1\nname: chat\ntarget: {transport: local}\nmodel: {name: m}\nruntime: {image: i}\n"
    assert load(text).spec.target.transport == "local"


def test_merge_keys_and_anchors_are_supported() -> None:
    text = MINIMAL + (
        "validation:\n  prompts:\n    - &base {name: a, chat: hi, max_tokens: 7}\n    - {<<: *base, name: b}\n"
    )
    prompts = load(text).spec.validation.prompts
    assert [(p.name, p.max_tokens) for p in prompts] == [("a", 7), ("b", 7)]


def test_spec_hash_is_stable_and_changes_with_the_model() -> None:
    first = load(MINIMAL).spec_hash
    assert first == load(MINIMAL).spec_hash
    assert first != load(MINIMAL.replace("Llama-3.1-8B", "Llama-3.2-3B")).spec_hash


def test_sizes_in_bytes() -> None:
    from bgdeploy.spec.models import size_bytes

    assert [size_bytes(t) for t in ("100", "64k", "64m", "16g", "2G", "7b")] == [
        100,
        65536,
        64 << 20,
        16 << 30,
        2 << 30,
        7,
    ]
