"""Invalid specs: every problem at once, each located at its line and column, with a fix."""

from __future__ import annotations

import pytest

from tests.unit.conftest import HOST_KEY, MINIMAL, problems


def test_all_problems_are_reported_together_with_lines_and_columns() -> None:
    text = f"""\
version: 1
name: Chat_1
target:
  host: gpu-1
  host_key: "{HOST_KEY}"
  hots: x
model:
  name: m
runtime:
  image: vllm/vllm-openai:v0.9.2
  gpu_memory_utilization: 0.5
  port: 99999
health:
  interval: fast
  timeout: 30m
rollout:
  strategy: canari
  smoke: [capitol]
validation:
  prompts:
    - {{name: capital, chat: hi}}
"""
    found = problems(text)
    assert found == [
        "bluegreen.yaml:2:7: name: must be lowercase letters, digits and hyphens, start with a letter, not end "
        "with a hyphen, at most 40 characters (it names containers and the router config), got the string "
        "'Chat_1'",
        "bluegreen.yaml:6:3: target.hots: unknown key 'hots'; did you mean 'hosts'?",
        "bluegreen.yaml:11:27: runtime.gpu_memory_utilization: blue and green share GPU 0, so both colours "
        "need 0.5 of its memory at once during the switch (1 in all, more than 0.95); set "
        "runtime.gpu_memory_utilization to 0.47 or less, or give green other GPUs",
        "bluegreen.yaml:12:9: runtime.port: must be from 1 to 65535, got 99999",
        "bluegreen.yaml:14:13: health.interval: expected a duration like 500ms, 30s, 15m, 1h, or a number of "
        "seconds, got the string 'fast'",
        "bluegreen.yaml:15:12: health.timeout: health.timeout must be shorter than health.ready_timeout",
        "bluegreen.yaml:17:13: rollout.strategy: must be one of all-at-once, canary; got the string 'canari'; "
        "did you mean 'canary'?",
        "bluegreen.yaml:18:11: rollout.smoke[0]: no validation prompt is named 'capitol'; did you mean 'capital'?",
    ]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("helth: {}\n", "10:1: helth: unknown key 'helth'; did you mean 'health'?"),
        ("router: {listen: 0}\n", "10:18: router.listen: must be from 1 to 65535, got 0"),
        ("router: {bind: everywhere}\n", "10:16: router.bind: 'everywhere' is not an IP address"),
        ("gpus: {blue: [0], green: [-1]}\n", "10:27: gpus.green[0]: must be at least 0, got -1"),
        (
            "rollout: {keep_previous: no}\n",
            "expected a string, got the boolean false (YAML reads no as a boolean: put it in quotes)",
        ),
        ("rollout: {steps: [{weight: 10, bake: 1m}]}\n", "rollout.steps: steps are only used with strategy: canary"),
        ("rollout: {strategy: canary}\n", "rollout.strategy: strategy: canary needs rollout.steps"),
        (
            "rollout: {strategy: canary, steps: [{weight: 50, bake: 1m}, {weight: 20, bake: 1m}]}\n",
            "rollout.steps[1].weight: canary weights must increase step by step: 20 follows 50",
        ),
        (
            "rollout: {strategy: canary, steps: [{weight: 101, bake: 1m}]}\n",
            "rollout.steps[0].weight: must be from 1 to 100, got 101",
        ),
        ("validation: {thresholds: {pass_rate: 1.5}}\n", "validation.thresholds.pass_rate: must be from 0 to 1"),
        (
            "validation: {prompts: [{name: a, chat: x}, {name: a, chat: y}]}\n",
            "validation.prompts[1].name: prompt name 'a' is already used by prompt #1",
        ),
        (
            "validation: {prompts: [{name: a}]}\n",
            "validation.prompts[0]: give exactly one of chat (a chat message), messages (a conversation) or prompt",
        ),
        ("validation: {prompts: [{name: a, chat: x, prompt: y}]}\n", "give exactly one of chat"),
        (
            "validation: {prompts: [{name: a, chat: x, expect: {regex: '(unclosed'}}]}\n",
            "validation.prompts[0].expect.regex: invalid regular expression",
        ),
        ("health: {timeout: 20m}\n", "health.timeout: health.timeout must be shorter than health.ready_timeout"),
        ("health: {path: health}\n", "health.path: must be a URL path starting with '/'"),
        ("version: 2\n", None),
    ],
)
def test_each_rule_has_a_clear_located_message(extra: str, expected: str | None) -> None:
    if extra.startswith("version"):
        found = problems(MINIMAL.replace("version: 1", "version: 2"))
        assert found == ["bluegreen.yaml:1:10: version: must be 1, got the number 2"]
        return
    found = problems(MINIMAL + extra)
    assert len(found) == 1, found
    assert expected is not None and expected in found[0]


def test_shared_gpu_utilisation_is_fine_at_the_limit_and_on_separate_gpus() -> None:
    from tests.unit.conftest import load

    load(MINIMAL + "  gpu_memory_utilization: 0.47\n")
    load(MINIMAL + "  gpu_memory_utilization: 0.9\ngpus: {blue: [0], green: [1]}\n")
    found = problems(MINIMAL + "  gpu_memory_utilization: 0.9\ngpus: {blue: [0, 1], green: [1, 2]}\n")
    assert "share GPU 1" in found[0]


def test_utilisation_must_be_above_zero_and_at_most_one() -> None:
    assert "must be more than 0 and at most 1, got 0" in problems(MINIMAL + "  gpu_memory_utilization: 0\n")[0]
    assert "must be more than 0 and at most 1, got 1.2" in problems(MINIMAL + "  gpu_memory_utilization: 1.2\n")[0]


def test_missing_required_keys_are_named() -> None:
    found = problems("version: 1\nname: chat\ntarget: {transport: local}\n")
    assert found == [
        "bluegreen.yaml:1:1: missing required key 'model' (model)",
        "bluegreen.yaml:1:1: missing required key 'runtime' (runtime)",
    ]
    nested = problems(MINIMAL.replace("  name: meta-llama/Llama-3.1-8B-Instruct\n", "  revision: main\n"))
    assert nested == ["bluegreen.yaml:6:1: model: missing required key 'name' (model.name)"]


def test_ssh_target_needs_a_host_and_a_pinned_key() -> None:
    text = "version: 1\nname: chat\ntarget: {user: deploy}\nmodel: {name: m}\nruntime: {image: i}\n"
    found = problems(text)
    assert any("target.host: target.host is required with transport: ssh" in f for f in found)
    assert any("host key must be pinned" in f and "ssh-keyscan" in f for f in found)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("not-a-key", "not an OpenSSH public key line"),
        ("ssh-foo AAAA", "unknown key type 'ssh-foo'"),
        ("ssh-ed25519 !!!notbase64", "not valid base64"),
        ("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==", "does not hold a ssh-ed25519 key"),
        (f"gpu-1.example.com {HOST_KEY}", "starts with a host name 'gpu-1.example.com' (known_hosts format)"),
    ],
)
def test_host_key_must_be_an_openssh_public_key_line(key: str, message: str) -> None:
    found = problems(MINIMAL.replace(HOST_KEY, key))
    assert len(found) == 1 and "target.host_key: invalid host key" in found[0] and message in found[0]


def test_command_placeholders_must_be_known() -> None:
    found = problems(MINIMAL + '  command: ["serve", "{model}", "--port={prot}"]\n')
    assert found == [
        "bluegreen.yaml:10:33: runtime.command[2]: unknown placeholder {prot}; known: {model}, {served_name}, "
        "{port}; did you mean 'port'?"
    ]


def test_generated_vllm_flags_cannot_be_repeated_in_args() -> None:
    found = problems(MINIMAL + '  args: ["--enforce-eager", "--port=9000"]\n')
    assert found == [
        "bluegreen.yaml:10:29: runtime.args[1]: --port is generated from runtime.port; set that key instead "
        "of passing the flag"
    ]


def test_secret_env_rules() -> None:
    found = problems(MINIMAL + "  env: {HF_TOKEN: x}\n  secret_env: [HF_TOKEN]\n  api_key_env: VLLM_API_KEY\n")
    assert any("HF_TOKEN is also in runtime.env" in f for f in found)
    assert any("VLLM_API_KEY must also be listed in runtime.secret_env" in f for f in found)


def test_explicit_null_is_refused() -> None:
    found = problems(MINIMAL + "  max_model_len:\n")
    assert found == ["bluegreen.yaml:10:17: runtime.max_model_len: expected a whole number, got an empty value"]


def test_smoke_with_no_prompts_says_so() -> None:
    found = problems(MINIMAL + "rollout: {smoke: [capital]}\n")
    assert "no validation prompts are defined" in found[0]
