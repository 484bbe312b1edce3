"""The starter bluegreen.yaml that `bgdeploy init` writes, from what it found on the host. Pure.

Every choice is written out with a comment saying why, so the file teaches the spec as it is edited.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bgdeploy.plan.gpu import Gpu
from bgdeploy.spec.lint import GATED_ORGS
from bgdeploy.spec.models import Jump

DEFAULT_MODEL = "Qwen/Qwen2.5-7B-Instruct"  # not gated: the first deploy needs no token
DEFAULT_IMAGE = "vllm/vllm-openai:v0.9.2"


@dataclass(frozen=True)
class HostFacts:
    host: str
    port: int
    user: str
    host_key: str  # "ssh-ed25519 AAAA..."
    fingerprint: str
    gpus: tuple[Gpu, ...] = ()
    gpu_problem: str = ""  # why no GPU was found (nvidia-smi missing or failing)
    docker_version: str = ""
    nvidia_runtime: bool = False


def looks_gated(model: str) -> bool:
    return model.startswith(GATED_ORGS)


def _q(text: str) -> str:
    """A YAML scalar that is read back as exactly this string (JSON strings are YAML)."""
    return json.dumps(text)


def _jump_lines(jump: Jump | None) -> list[str]:
    if jump is None:
        return []
    user = [f"    user: {_q(jump.user)}"] if jump.user else []
    return [
        "  jump:   # the bastion that carries the SSH session (ssh -J)",
        f"    host: {_q(jump.host)}",
        f"    port: {jump.port}",
        *user,
        f"    host_key: {_q(jump.host_key)}",
    ]


def render(
    facts: HostFacts, *, name: str, model: str, gated: bool, listen: int = 8080, jump: Jump | None = None
) -> str:
    gpus = list(facts.gpus)
    if len(gpus) >= 2:
        blue, green, util = [gpus[0].index], [gpus[1].index], "0.9"
        gpu_note = (
            f"# {len(gpus)} GPUs found: blue on GPU {gpus[0].index}, green on GPU {gpus[1].index}, each with 0.9 of\n"
            "# its memory (a canary is possible: both colours can serve at once)."
        )
    elif gpus:
        blue, green, util = [gpus[0].index], [gpus[0].index], "0.45"
        gpu_note = (
            f"# One GPU found ({gpus[0].name}, {gpus[0].total_mib} MiB): both colours share it, each with 0.45 of its\n"
            "# memory, so the new one can load beside the live one (README: Sizing a single GPU)."
        )
    else:
        blue, green, util = [], [], "0.45"
        gpu_note = f"# No GPU found ({facts.gpu_problem or 'nvidia-smi listed none'}): fill in gpus before deploying."
    found = [f"#   GPU {g.index}: {g.name}, {g.total_mib} MiB ({g.free_mib} MiB free)" for g in gpus]
    docker = f"Docker {facts.docker_version}" if facts.docker_version else "Docker: not found"
    runtime = (
        "the NVIDIA runtime is installed"
        if facts.nvidia_runtime
        else "no NVIDIA runtime (install the NVIDIA Container Toolkit)"
    )
    token = (
        "  secret_env: [HF_TOKEN]     # gated model: export HF_TOKEN (in CI: a secret) before deploying\n"
        if gated
        else "  # secret_env: [HF_TOKEN]   # for a gated model (meta-llama/..., mistralai/...)\n"
    )
    lines = [
        "# Completion in editors: `bgdeploy schema > bluegreen.schema.json`, and a first line",
        "# `# yaml-language-server: $schema=bluegreen.schema.json`. Every key: README and the schema.",
        f"# Written by `bgdeploy init` for {facts.user}@{facts.host}:{facts.port}. Found there:",
        f"#   {docker}; {runtime}",
        *found,
        "# Next: `bgdeploy validate`, then `bgdeploy plan` (read-only), then `bgdeploy deploy`.",
        "version: 1",
        f"name: {_q(name)}",
        "target:",
        f"  host: {_q(facts.host)}",
        f"  port: {facts.port}",
        f"  user: {_q(facts.user)}",
        f"  # {facts.fingerprint}, confirmed when this file was written; a different key is refused.",
        f"  host_key: {_q(facts.host_key)}",
        *_jump_lines(jump),
        "model:",
        f"  name: {_q(model)}",
        "  served_name: chat   # the name clients ask for; the same on both colours",
        "runtime:",
        f"  image: {DEFAULT_IMAGE}",
        f"  gpu_memory_utilization: {util}",
        token.rstrip("\n"),
        '  volumes: ["/srv/hf-cache:/root/.cache/huggingface"]   # weights downloaded once: mkdir -p /srv/hf-cache',
        gpu_note,
        "gpus:",
        f"  blue: {json.dumps(blue)}",
        f"  green: {json.dumps(green)}",
        "router:",
        f"  listen: {listen}   # clients reach the live colour at http://{facts.host}:{listen}",
        "  bind: 127.0.0.1     # 0.0.0.0 to serve other machines",
        "health:",
        "  ready_timeout: 15m   # a first start downloads the weights",
        "validation:",
        "  prompts:",
        "    - name: capital",
        '      chat: "What is the capital of France? Answer in one word."',
        "      max_tokens: 16",
        "      expect: {contains: Paris, max_latency: 10s}",
        "rollout:",
        "  smoke: [capital]   # asked again through the router after the switch",
        "  bake: 60s          # live traffic watched before the deploy finishes",
    ]
    return "\n".join(lines) + "\n"
