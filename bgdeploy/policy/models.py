"""Pydantic models of the host policy file (default /etc/bgdeploy/policy.yaml). Field descriptions flow into
schema/policy.schema.json.

What a key leaves out is refused where that is the safe choice (no image matches an empty `images`, no bind
mount is allowed without `volumes`, `runtime.command` needs `command_override: true`); keys that only bound
resources (GPUs, memory, ports) allow anything when absent.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

GLOB_PATTERN = r"^[^\s]{1,512}$"
HOST_SOURCE_PATTERN = r"^(/[^\s:]*|[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$"
SIZE_PATTERN = r"^[0-9]+[bkmgBKMG]?$"
ENV_GLOB_PATTERN = r"^[A-Za-z0-9_*?\[\]!-]{1,128}$"

DEFAULT_ENV_DENY = (
    "LD_*",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "BASH_ENV",
    "ENV",
    "PERL5LIB",
    "PERL5OPT",
    "NODE_OPTIONS",
)

Glob = Annotated[str, Field(pattern=GLOB_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]
RouterMode = Literal["container", "host"]
ROUTER_MODES: tuple[RouterMode, ...] = ("container", "host")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class VolumeRule(_Section):
    """One allowed bind source: the directory itself and everything below it."""

    host: str = Field(
        pattern=HOST_SOURCE_PATTERN,
        description="An absolute host directory (allowed with everything below it), or a named Docker volume.",
    )
    mode: Literal["ro", "rw"] = Field(
        default="ro", description="ro: only read-only mounts (`:ro`) are allowed. rw: read-write mounts too."
    )


class RouterRule(_Section):
    """What the router part of a spec may ask for."""

    listen: list[Port] | None = Field(
        default=None, description="Ports router.listen may use (absent: any port; the host still refuses used ones)."
    )
    modes: list[RouterMode] = Field(
        default_factory=lambda: list(ROUTER_MODES), description="Allowed router.mode values."
    )
    config_paths: list[Glob] = Field(
        default_factory=list,
        description=(
            "Glob patterns an explicit router.config_path (host mode) must match; [] = only the default "
            "/etc/nginx/conf.d/bgdeploy-<name>.conf."
        ),
    )
    binds: list[str] | None = Field(
        default=None, description="Addresses router.bind may use, e.g. [127.0.0.1] (absent: any address)."
    )
    images: list[Glob] | None = Field(
        default=None,
        description="Glob patterns of router.image (container mode); absent: the top-level `images` apply.",
    )


class Policy(_Section):
    """The host policy of bgdeploy: what any bluegreen.yaml may do on this host."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, title="bgdeploy host policy")

    version: Literal[1] = Field(description="Version of this file format; only 1 exists.")
    images: list[Glob] = Field(
        description=(
            "Glob patterns of allowed images (runtime.image, and router.image unless router.images is given), "
            "matched against the reference as written and as Docker shows it (no docker.io/, no library/). "
            "'*' does not cross '/', '**' does. E.g. vllm/vllm-openai:*, registry.internal/llm/*@sha256:*."
        ),
    )
    require_digest: bool = Field(
        default=False, description="Images must be pinned by digest (REPO@sha256:...) or given as a local image ID."
    )
    names: list[Glob] | None = Field(
        default=None, description="Glob patterns of deployment names that may live on this host (absent: any)."
    )
    models: list[Glob] | None = Field(
        default=None, description="Glob patterns of allowed model.name values (absent: any)."
    )
    volumes: list[VolumeRule] = Field(
        default_factory=list, description="Allowed bind sources; [] = no bind mounts at all."
    )
    env_deny: list[Annotated[str, Field(pattern=ENV_GLOB_PATTERN)]] = Field(
        default_factory=lambda: list(DEFAULT_ENV_DENY),
        description=(
            "Glob patterns of environment variable names a spec may not set (runtime.env and runtime.secret_env). "
            "Default: loader and interpreter hooks such as LD_*, PYTHONPATH."
        ),
    )
    gpus: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, description="GPU indices a spec may use (absent: any)."
    )
    max_gpu_memory_utilization: float = Field(
        default=1.0, gt=0, le=1, description="Highest runtime.gpu_memory_utilization allowed."
    )
    shm_size_max: str | None = Field(
        default=None, pattern=SIZE_PATTERN, description="Largest runtime.shm_size allowed, e.g. 32g (absent: any)."
    )
    args_deny: list[Glob] = Field(
        default_factory=lambda: ["--trust-remote-code*", "--config"],
        description=(
            "Glob patterns of server arguments a spec may not pass (runtime.args, and runtime.command when "
            "allowed), matched against each argument and its `--flag` part before '='. Default: "
            "--trust-remote-code, which runs code from the model's repository, and --config, which reads more "
            "flags (that one too) from a file in the container."
        ),
    )
    command_override: bool = Field(
        default=False, description="Whether runtime.command (replacing the server's command line) is allowed."
    )
    router: RouterRule = Field(default_factory=RouterRule, description="What the router part may ask for.")
