"""What a colour's container looks like, derived from the spec: command line, env, labels. Pure.

The container's argv is built as a list (never a shell string), so nothing from the spec is interpreted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bgdeploy.errors import UsageError
from bgdeploy.plan.names import LABEL_PREFIX, Colour, Layout
from bgdeploy.plan.state import Release
from bgdeploy.spec.models import Spec
from bgdeploy.untrusted.secrets import MIN_LENGTH


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    image: str
    command: tuple[str, ...]
    env: dict[str, str]
    secret_names: tuple[str, ...]
    labels: dict[str, str]
    gpus: tuple[int, ...]
    volumes: tuple[str, ...]
    shm_size: str | None
    port: int
    stop_timeout: int
    host_port: int | None = None  # published on the host's 127.0.0.1 there (None: Docker picks one per start)


def server_args(spec: Spec) -> list[str]:
    """The server's arguments: vLLM's flags from the spec, or runtime.command with placeholders filled."""
    values = {"model": spec.model.name, "served_name": spec.model.effective_served_name, "port": str(spec.runtime.port)}
    if spec.runtime.command is not None:
        return [part.format(**values) for part in spec.runtime.command] + list(spec.runtime.args)
    args = ["--model", spec.model.name]
    if spec.model.revision:
        args += ["--revision", spec.model.revision]
    args += [
        "--served-model-name",
        spec.model.effective_served_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(spec.runtime.port),
        "--gpu-memory-utilization",
        f"{spec.runtime.gpu_memory_utilization:g}",
    ]
    if spec.runtime.max_model_len is not None:
        args += ["--max-model-len", str(spec.runtime.max_model_len)]
    return args + list(spec.runtime.args)


def secret_values(spec: Spec, environ: Mapping[str, str]) -> dict[str, str]:
    """The secret env values from the runner's environment; a missing one is a usage error (named, not shown)."""
    missing = [name for name in spec.runtime.secret_env if name not in environ]
    if missing:
        raise UsageError(
            f"runtime.secret_env names {', '.join(missing)}, but the runner's environment does not set "
            f"{'it' if len(missing) == 1 else 'them'}; export it (in CI: from a secret) before deploying"
        )
    short = [name for name in spec.runtime.secret_env if 0 < len(environ[name]) < MIN_LENGTH]
    if short:
        # Masking skips values this short (they would mangle ordinary words), so such a secret would show.
        raise UsageError(
            "; ".join(f"{name} is {len(environ[name])} characters" for name in short)
            + f": a secret shorter than {MIN_LENGTH} characters cannot be masked in logs and reports; use a longer one"
        )
    return {name: environ[name] for name in spec.runtime.secret_env}


def gpu_list(indices: list[int]) -> str:
    return ",".join(str(i) for i in indices) or "none"


def colour_gpus(spec: Spec, colour: Colour) -> list[int]:
    return spec.gpus.blue if colour == "blue" else spec.gpus.green


def spec_release(spec: Spec, colour: Colour, spec_hash: str, deployed_at: str) -> Release:
    """The release this spec makes of `colour`: what its container's labels will say."""
    return Release(
        colour,
        spec.model.name,
        spec.runtime.image,
        spec_hash,
        deployed_at,
        gpus=gpu_list(colour_gpus(spec, colour)),
        memory=f"{spec.runtime.gpu_memory_utilization:g}",
    )


def plan_container(
    spec: Spec, layout: Layout, colour: Colour, spec_hash: str, deployed_at: str, host_port: int | None = None
) -> ContainerPlan:
    # The labels describe the release for as long as the container exists: the router reaches each colour on
    # the port its own release listens on (`port`), never on the current spec's.
    labels = {
        f"{LABEL_PREFIX}name": spec.name,
        f"{LABEL_PREFIX}colour": colour,
        f"{LABEL_PREFIX}model": spec.model.name,
        f"{LABEL_PREFIX}image": spec.runtime.image,
        f"{LABEL_PREFIX}spec-hash": spec_hash,
        f"{LABEL_PREFIX}deployed-at": deployed_at,
        f"{LABEL_PREFIX}gpus": gpu_list(colour_gpus(spec, colour)),
        f"{LABEL_PREFIX}gpu-memory-utilization": f"{spec.runtime.gpu_memory_utilization:g}",
        f"{LABEL_PREFIX}port": str(spec.runtime.port),
    }
    if host_port is not None:
        labels[f"{LABEL_PREFIX}host-port"] = str(host_port)
    gpus = colour_gpus(spec, colour)
    env = dict(spec.runtime.env)
    if not gpus:
        # CUDA base images set NVIDIA_VISIBLE_DEVICES=all: where the host's default runtime is nvidia, a
        # container with no device request would still get every GPU. `void` makes that runtime act as runc.
        env.setdefault("NVIDIA_VISIBLE_DEVICES", "void")
    return ContainerPlan(
        name=layout.container(colour),
        image=spec.runtime.image,
        command=tuple(server_args(spec)),
        env=env,
        secret_names=tuple(spec.runtime.secret_env),
        labels=labels,
        gpus=tuple(gpus),
        volumes=tuple(spec.runtime.volumes),
        shm_size=spec.runtime.shm_size,
        port=spec.runtime.port,
        # Docker's SIGTERM→SIGKILL grace must cover the drain, so in-flight answers can finish.
        stop_timeout=math.ceil(spec.rollout.drain_timeout) + 10,
        host_port=host_port,
    )
