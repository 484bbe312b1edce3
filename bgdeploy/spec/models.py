"""Pydantic models of bluegreen.yaml: the product's interface. Field descriptions flow into the JSON schema.

Structural rules (types, ranges, patterns, unknown keys) live here and in the generated schema; rules
that relate several fields (GPU sharing, canary steps, prompt names) live in `spec.checks` so that all
of them are reported together.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from bgdeploy.spec.durations import DURATION_HINT, DURATION_PATTERN, parse_duration
from bgdeploy.spec.images import IMAGE_PATTERN

NAME_PATTERN = r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$"
PROMPT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
VOLUME_PATTERN = r"^[^:\s]+:[^:\s]+(:(ro|rw))?$"
SIZE_PATTERN = r"^[0-9]+[bkmgBKMG]?$"
URL_PATH_PATTERN = r"^/[^\s]*$"
# Identifiers reach container labels, reports and PR comments: printable, bounded, no markup, no newline, and
# never starting with '@' (a mention) or '-' (read as a flag by the server).
MODEL_NAME_PATTERN = r"^[A-Za-z0-9_./][A-Za-z0-9_./:+-]{0,254}$"
SERVED_NAME_PATTERN = r"^[A-Za-z0-9_.][A-Za-z0-9_./:+-]{0,127}$"
REVISION_PATTERN = r"^[A-Za-z0-9_.][A-Za-z0-9_./+-]{0,127}$"
HOST_PATTERN = r"^[A-Za-z0-9\[][A-Za-z0-9_.:%\[\]-]{0,252}$"
USER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$"
ENVIRONMENT_PATTERN = r"^[A-Za-z0-9_.-]([A-Za-z0-9 _./-]{0,253}[A-Za-z0-9_.-])?$"
# Relative and without backslashes; `..` segments and symlinks out of the checkout are refused when loading.
DATASET_PATH_PATTERN = r"^[^/\\\s][^\\\s]*$"

FLEET_HOST_PATTERN = r"^[A-Za-z0-9\[][A-Za-z0-9_.:%\[\]-]{0,252}$"
FLEET_LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$"
FLEET_PERCENT_PATTERN = r"^([1-9][0-9]?|100)%$"

# vLLM flags bgdeploy generates from other keys; repeating them in runtime.args would contradict those keys.
GENERATED_FLAGS = {
    "--model": "model.name",
    "--revision": "model.revision",
    "--served-model-name": "model.served_name",
    "--port": "runtime.port",
    "--gpu-memory-utilization": "runtime.gpu_memory_utilization",
    "--max-model-len": "runtime.max_model_len",
}
COMMAND_PLACEHOLDERS = ("model", "served_name", "port")


def size_bytes(text: str) -> int:
    """A size as written in the spec (16g, 512m, 64k, 100) in bytes."""
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    last = text[-1].lower()
    return int(text[:-1]) * units[last] if last in units else int(text)


def _str_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _env_value(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def duration_default(text: str) -> Any:
    """A duration default as written in the file ("15m"): shown so in the schema, parsed on validation."""
    return text


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {"type": ["string", "number"], "pattern": DURATION_PATTERN, "minimum": 0, "description": DURATION_HINT}
    ),
]
StrList = Annotated[
    list[str],
    BeforeValidator(_str_list),
    WithJsonSchema({"type": ["string", "array"], "items": {"type": "string"}}),
]
EnvValue = Annotated[str, BeforeValidator(_env_value), WithJsonSchema({"type": ["string", "number"]})]
Port = Annotated[int, Field(ge=1, le=65535)]
# A number of hosts (at least 1) or a percentage of the fleet ("25%", rounded up to at least one host).
FleetCount = Annotated[
    Annotated[int, Field(ge=1, le=100_000)] | Annotated[str, Field(pattern=FLEET_PERCENT_PATTERN)],
    Field(union_mode="left_to_right"),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": FLEET_PERCENT_PATTERN}]}
    ),
]
Fraction = Annotated[float, Field(ge=0, le=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Jump(_Section):
    """A bastion (jump host): the whole SSH session to the GPU server is carried through it, as `ssh -J` does."""

    host: str = Field(pattern=HOST_PATTERN, description="Host name or IP address of the bastion.")
    port: Port = Field(default=22, description="The bastion's SSH port.")
    user: str | None = Field(
        default=None, pattern=USER_PATTERN, description="SSH user on the bastion (default: target.user)."
    )
    host_key: str = Field(
        description=(
            "The bastion's own SSH host public key, pinned like target.host_key: one OpenSSH line such as "
            "'ssh-ed25519 AAAA...' (`ssh-keyscan -t ed25519 BASTION`, checked out of band)."
        ),
    )


class Target(_Section):
    """Where the GPU server is and how bgdeploy reaches it."""

    host: str | None = Field(
        default=None,
        pattern=HOST_PATTERN,
        description="Host name or IP address of the GPU server. Required with transport: ssh.",
    )
    port: Port = Field(default=22, description="SSH port.")
    user: str = Field(
        default="root", pattern=USER_PATTERN, description="SSH user; needs access to the Docker engine."
    )
    host_key: str | None = Field(
        default=None,
        description=(
            "The server's SSH host public key, pinned: one OpenSSH line such as 'ssh-ed25519 AAAA...'. "
            "Get it with `ssh-keyscan -t ed25519 HOST` (drop the leading host name) and check it out of band. "
            "Give this or known_hosts."
        ),
    )
    known_hosts: str | None = Field(
        default=None,
        min_length=1,
        description="Path to a known_hosts file holding the server's key (relative to the spec file).",
    )
    transport: Literal["ssh", "local"] = Field(
        default="ssh",
        description="ssh: reach the host over SSH. local: this machine is the GPU host (self-hosted runner).",
    )
    connect_timeout: Duration = Field(
        default=duration_default("15s"), description="Give up connecting after this long."
    )
    jump: Jump | None = Field(
        default=None,
        description=(
            "Reach the GPU server through this bastion (one hop; the same private key logs in on both, and both "
            "host keys are pinned)."
        ),
    )
    hosts: list[FleetHost] | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description=(
            "A fleet: deploy to every one of these GPU servers (instead of target.host), batch by batch as "
            "rollout.fleet says. user, port, transport, host_key and known_hosts above are the defaults of each."
        ),
    )


class Model(_Section):
    """The model to serve."""

    name: str = Field(pattern=MODEL_NAME_PATTERN, description="Model id or path, passed to vLLM as --model.")
    revision: str | None = Field(
        default=None, pattern=REVISION_PATTERN, description="Model revision (branch, tag, commit)."
    )
    served_name: str | None = Field(
        default=None,
        pattern=SERVED_NAME_PATTERN,
        description=(
            "--served-model-name: the name clients use. Kept identical on both colours so clients never "
            "notice a deploy. Defaults to model.name."
        ),
    )

    @property
    def effective_served_name(self) -> str:
        return self.served_name or self.name


class Runtime(_Section):
    """The container that serves the model."""

    image: str = Field(pattern=IMAGE_PATTERN, description="Server image, e.g. vllm/vllm-openai:v0.9.2.")
    port: Port = Field(default=8000, description="The server's port inside the container.")
    gpu_memory_utilization: float = Field(
        default=0.45,
        gt=0,
        le=1,
        description=(
            "--gpu-memory-utilization: fraction of each GPU's total memory one colour may use. Where blue and "
            "green share a GPU, twice this must stay at or below 0.95 (both run at once during the switch)."
        ),
    )
    max_model_len: int | None = Field(default=None, ge=1, description="--max-model-len (context length).")
    args: list[str] = Field(
        default_factory=list, description="Extra arguments appended to the generated vLLM arguments."
    )
    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Replaces the generated vLLM arguments entirely (any OpenAI-compatible server). The placeholders "
            "{model}, {served_name} and {port} are substituted; write {{ and }} for literal braces."
        ),
    )
    env: dict[Annotated[str, Field(pattern=ENV_NAME_PATTERN)], EnvValue] = Field(
        default_factory=dict, description="Environment variables of the server container (not secret)."
    )
    secret_env: list[Annotated[str, Field(pattern=ENV_NAME_PATTERN)]] = Field(
        default_factory=list,
        description=(
            "Names of environment variables read from the runner's environment and passed to the container; "
            "their values are never printed."
        ),
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=ENV_NAME_PATTERN,
        description=(
            "Name of a secret_env entry holding the server's API key (e.g. VLLM_API_KEY); validation "
            "requests send it as a bearer token."
        ),
    )
    volumes: list[Annotated[str, Field(pattern=VOLUME_PATTERN)]] = Field(
        default_factory=list, description="Bind mounts, HOST_PATH:CONTAINER_PATH[:ro|rw]."
    )
    shm_size: str | None = Field(
        default=None, pattern=SIZE_PATTERN, description="Shared memory size, e.g. 16g (vLLM needs it with TP)."
    )


class Gpus(_Section):
    """GPU indices of each colour, as nvidia-smi numbers them."""

    blue: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: [0], description="GPU indices of the blue colour; [] = no GPU."
    )
    green: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: [0],
        description="GPU indices of the green colour; the same as blue = the single-GPU split.",
    )


class FleetHost(_Section):
    """One GPU server of a fleet; keys left out come from target."""

    host: str = Field(
        pattern=FLEET_HOST_PATTERN, description="Host name or IP address of this server."
    )
    port: Port | None = Field(default=None, description="SSH port (default: target.port).")
    label: str | None = Field(
        default=None,
        pattern=FLEET_LABEL_PATTERN,
        description="Short name in reports and for --host (default: the host, with :port when not 22).",
    )
    host_key: str | None = Field(
        default=None, description="This server's pinned SSH host key (default: target.host_key)."
    )
    known_hosts: str | None = Field(
        default=None, min_length=1, description="known_hosts file for this server (default: target.known_hosts)."
    )
    gpus: Gpus | None = Field(default=None, description="GPUs of each colour on this server (default: gpus).")


class Fleet(_Section):
    """How a deploy moves through the hosts of target.hosts."""

    batch: FleetCount = Field(
        default=1, description="Hosts deployed at once after the first batch: a number or a percentage (\"25%\")."
    )
    first_batch: FleetCount = Field(
        default=1,
        description="Hosts of the first batch (the fleet's canary): a number or a percentage of the fleet.",
    )
    pause: Duration = Field(
        default=0, description="Wait this long after each batch before the fleet gate and the next batch."
    )
    max_failed_hosts: int = Field(
        default=0,
        ge=0,
        le=1000,
        description=(
            "Hosts whose deploy may fail (each rolls itself back) before the whole rollout stops and every host "
            "switched by this deploy is rolled back."
        ),
    )
    canary: Literal["first-batch", "every-host"] = Field(
        default="first-batch",
        description=(
            "strategy: canary with target.hosts. first-batch: the canary steps run on the first batch only; once "
            "it passed, the other batches switch all at once. every-host: every host runs the canary steps."
        ),
    )


class Router(_Section):
    """The nginx in front of both colours."""

    mode: Literal["container", "host"] = Field(
        default="container",
        description="container: an nginx container managed by bgdeploy. host: the host's nginx, one include file.",
    )
    image: str = Field(default="nginx:1.27", pattern=IMAGE_PATTERN, description="nginx image (container mode).")
    listen: Port = Field(default=80, description="Port clients connect to.")
    bind: str = Field(default="0.0.0.0", description="Address the router listens on.")
    config_path: str | None = Field(
        default=None,
        pattern=r"^/[^\s]*\.conf$",
        description=(
            "host mode: the one include file bgdeploy owns in the host's nginx (default "
            "/etc/nginx/conf.d/bgdeploy-<name>.conf). Its directory must be writable by target.user."
        ),
    )
    sudo: bool = Field(
        default=False,
        description="host mode: run `nginx -t` and `nginx -s reload` through `sudo -n` (needs a NOPASSWD rule).",
    )
    read_timeout: Duration = Field(
        default=duration_default("120s"),
        description="proxy_read_timeout: longer than the longest answer, streams included.",
    )
    access_log_max: str = Field(
        default="64m",
        pattern=SIZE_PATTERN,
        description=(
            "Rotate the router's access log (kept once, as access.log.1) when a deploy finds it larger than this."
        ),
    )


class Health(_Section):
    """How readiness is decided while the model loads."""

    path: str = Field(default="/health", pattern=URL_PATH_PATTERN, description="Readiness path (200 = ready).")
    interval: Duration = Field(default=duration_default("2s"), description="Time between two health probes.")
    timeout: Duration = Field(default=duration_default("5s"), description="Timeout of one health probe.")
    ready_timeout: Duration = Field(
        default=duration_default("15m"),
        description="Give up when not ready after this long (loading can take many minutes).",
    )


class ExpectToolCall(_Section):
    """The tool call an answer must make."""

    name: str = Field(min_length=1, description="Name of the function the model must call.")
    arguments_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema the call's arguments (parsed as JSON) must satisfy."
    )


class Expect(_Section):
    """Rules an answer must satisfy; all given rules must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, populate_by_name=True)

    contains: StrList = Field(default_factory=list, description="Every one of these must appear in the answer.")
    any_of: StrList = Field(default_factory=list, description="At least one of these must appear.")
    not_contains: StrList = Field(default_factory=list, description="None of these may appear.")
    regex: str | None = Field(default=None, description="A Python regular expression that must match.")
    equals: str | None = Field(default=None, description="The whole answer, stripped, must equal this.")
    # Aliased: a field named `json` would shadow BaseModel.json.
    json_valid: bool = Field(default=False, alias="json", description="The answer must be valid JSON.")
    ignore_case: bool = Field(default=False, description="Compare contains/any_of/not_contains/equals ignoring case.")
    max_latency: Duration | None = Field(default=None, description="The answer must arrive within this time.")
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description=(
            "The answer must be JSON valid against this JSON Schema (structured outputs; pair it with the "
            "prompt's response_format)."
        ),
    )
    tool_call: ExpectToolCall | None = Field(
        default=None, description="The answer must call this tool (the prompt must offer it in `tools`)."
    )


class Message(_Section):
    """One turn of a multi-turn conversation."""

    role: Literal["system", "user", "assistant", "tool"] = Field(description="Who speaks.")
    content: str = Field(description="What is said.")


class Prompt(_Section):
    """One validation prompt: give exactly one of chat, messages or prompt."""

    name: str = Field(pattern=PROMPT_NAME_PATTERN, description="Unique name, used in reports and rollout.smoke.")
    chat: str | None = Field(default=None, min_length=1, description="A user message sent to /v1/chat/completions.")
    messages: list[Message] | None = Field(
        default=None,
        min_length=1,
        description="A multi-turn conversation sent to /v1/chat/completions (the model answers the last turn).",
    )
    system: str | None = Field(default=None, description="Optional system message (chat or messages).")
    prompt: str | None = Field(default=None, min_length=1, description="A raw prompt sent to /v1/completions.")
    tools: list[dict[str, Any]] | None = Field(
        default=None,
        min_length=1,
        description="OpenAI-style tool definitions offered to the model (chat or messages).",
    )
    tool_choice: str | dict[str, Any] | None = Field(
        default=None, description="OpenAI-style tool_choice: auto, none, required, or a named function."
    )
    response_format: dict[str, Any] | None = Field(
        default=None,
        description="OpenAI-style response_format, e.g. {type: json_schema, json_schema: {name, schema}}.",
    )
    max_tokens: int = Field(default=64, ge=1, le=1_000_000, description="max_tokens of the request.")
    temperature: float = Field(
        default=0, ge=0, le=2, description="Sampling temperature; 0 keeps validation deterministic."
    )
    expect: Expect = Field(default_factory=Expect, description="What the answer must satisfy.")


class ReplayThresholds(_Section):
    """Gates on the replay of captured traffic (green against the live colour on the same requests)."""

    max_error_rate: Fraction | None = Field(
        default=None, description="Maximum fraction of replayed requests green fails (HTTP error, timeout)."
    )
    max_latency_p95_vs_live: float | None = Field(
        default=None, gt=0, le=1000, description="Green's replay p95 latency may be at most this many times live's."
    )
    min_agreement: Fraction | None = Field(
        default=None,
        description="Minimum share of replayed requests both answered whose answers agree (whitespace and case aside).",
    )


class Thresholds(_Section):
    """Figures over all validation prompts that green must reach."""

    pass_rate: Fraction = Field(default=1.0, description="Minimum fraction of prompts whose expectations hold.")
    p95_latency: Duration | None = Field(default=None, description="Maximum 95th percentile latency.")
    max_error_rate: Fraction = Field(
        default=0.0, description="Maximum fraction of requests that fail (HTTP error, timeout)."
    )
    ttft_p95: Duration | None = Field(
        default=None, description="Maximum 95th percentile time to first token (streamed validation)."
    )
    itl_p95: Duration | None = Field(
        default=None, description="Maximum 95th percentile of the prompts' mean inter-token latency (streamed)."
    )
    min_pass_rate_vs_live: float | None = Field(
        default=None,
        ge=-1,
        le=1,
        description=(
            "Green's pass rate minus the live colour's, on the same prompts asked at the same time, must be at "
            "least this (-0.02: green may lose at most 2 points). Skipped when nothing is live."
        ),
    )
    max_ttft_p95_vs_live: float | None = Field(
        default=None, gt=0, le=1000, description="Green's TTFT p95 may be at most this many times the live colour's."
    )
    max_itl_p95_vs_live: float | None = Field(
        default=None, gt=0, le=1000, description="Green's ITL p95 may be at most this many times the live colour's."
    )
    max_latency_p95_vs_live: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Green's whole-request p95 latency may be at most this many times the live colour's.",
    )
    min_agreement_with_live: Fraction | None = Field(
        default=None,
        description=(
            "Minimum share of temperature-0 prompts whose answers agree with the live colour's (after "
            "normalising whitespace and case; tool calls compare name and arguments)."
        ),
    )
    replay: ReplayThresholds = Field(
        default_factory=ReplayThresholds,
        description="Gates on the replay of captured live requests (validation.replay), green against live.",
    )


class Dataset(_Section):
    """An eval set: a JSON Lines file of prompts kept in the repository next to the spec."""

    path: str = Field(
        pattern=DATASET_PATH_PATTERN,
        description=(
            "Path of a .jsonl file relative to the spec file, inside the repository checkout; each line is a "
            "prompt with the keys of an inline prompt (name optional)."
        ),
    )
    sample: int | None = Field(
        default=None, ge=1, le=100_000, description="Ask a random sample of this many prompts (default: all)."
    )
    seed: int = Field(default=0, ge=0, description="Seed of the sample: the same seed picks the same prompts.")


class LoadProbe(_Section):
    """An opt-in load probe: the same requests to both colours at the same concurrency."""

    concurrency: int = Field(default=8, ge=1, le=256, description="Requests in flight at once, per colour.")
    requests: int = Field(default=64, ge=1, le=100_000, description="Requests per colour.")


CAPTURE_PATH_PATTERN = r"^/v1/[A-Za-z0-9/_.-]{1,120}$"


class Capture(_Section):
    """Opt-in capture of live request bodies by the router, kept only on the host (see README: Real traffic)."""

    sample: Annotated[float, Field(ge=0.0001, le=1)] = Field(
        default=0.02, description="Fraction of requests on `paths` whose body is stored (0.02: one in fifty)."
    )
    max_bytes: str = Field(
        default="64m",
        pattern=SIZE_PATTERN,
        description=(
            "Bound of the capture on the host (the file and its one rotated part together); a keeper container "
            "started with the router enforces it at all times, also when no bgdeploy command runs."
        ),
    )
    max_body: str = Field(
        default="64k",
        pattern=SIZE_PATTERN,
        description="Largest request body stored; larger requests are served as usual and never stored.",
    )
    paths: list[Annotated[str, Field(pattern=CAPTURE_PATH_PATTERN)]] = Field(
        default_factory=lambda: ["/v1/chat/completions", "/v1/completions"],
        min_length=1,
        max_length=16,
        description="Request paths whose JSON bodies are captured (POST with a JSON content type only).",
    )


class Replay(_Section):
    """Replay of captured live requests against green and the live colour at the same time, before the switch."""

    capture: Capture | None = Field(
        default=None, description="Capture live request bodies (opt-in); without it nothing is stored or replayed."
    )
    requests: int = Field(default=50, ge=1, le=10_000, description="Captured requests replayed (distinct bodies).")
    seed: int = Field(default=1, ge=0, description="Seed of the sample: the same seed picks the same requests.")
    max_tokens: int = Field(
        default=256, ge=1, le=65_536, description="Cap of max_tokens in each replayed request (comparability)."
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="Replayed requests in flight at once, per colour.")
    timeout: Duration = Field(default=duration_default("60s"), description="Timeout of one replayed request.")


class Validation(_Section):
    """Prompts asked to green before it gets any traffic."""

    concurrency: int = Field(default=4, ge=1, le=256, description="Prompts in flight at once.")
    compare_with_live: bool = Field(
        default=True, description="Also ask the live colour and show both answers side by side."
    )
    timeout: Duration = Field(default=duration_default("60s"), description="Timeout of one validation request.")
    preview_on_pr: bool = Field(
        default=False,
        description=(
            "GitHub Action on pull requests: ask, in the PR comment, for a preview (the new model loaded beside "
            "the live one and validated, never switched). Only the workflow starts one (mode: preview)."
        ),
    )
    prompts: list[Prompt] = Field(default_factory=list, description="The validation prompts.")
    datasets: list[Dataset] = Field(
        default_factory=list, description="Eval sets (JSON Lines files of prompts) asked besides the inline prompts."
    )
    stream: bool = Field(
        default=True,
        description="Ask with streaming and measure time to first token, inter-token latency and tokens/s.",
    )
    failures_shown: int = Field(
        default=10, ge=0, le=1000, description="How many failing prompts per dataset the report lists."
    )
    load: LoadProbe | None = Field(
        default=None,
        description=(
            "Opt-in load probe after validation: both colours get the same requests at the same concurrency. "
            "On a shared GPU it also loads the live colour."
        ),
    )
    thresholds: Thresholds = Field(default_factory=Thresholds, description="Figures over all prompts.")
    replay: Replay | None = Field(
        default=None,
        description=(
            "Capture sampled live requests on the host and replay them against green and live before the switch."
        ),
    )


class CanaryStep(_Section):
    """One canary step: send `weight` percent of traffic to green, watch for `bake`."""

    weight: int = Field(ge=1, le=100, description="Percent of requests sent to green (1-100).")
    bake: Duration = Field(description="How long to watch this step before the next.")


class RollbackOn(_Section):
    """Live-traffic limits that trigger an automatic rollback."""

    max_error_rate: Fraction = Field(default=0.01, description="Maximum fraction of failed live requests.")
    p95_latency: Duration | None = Field(default=None, description="Maximum 95th percentile live latency.")
    max_p95_vs_live: float | None = Field(
        default=None,
        gt=1,
        le=100,
        description=(
            "Canary: the new colour's p95 latency may be at most this many times the old colour's over the same "
            "window (e.g. 1.2), judged once both have min_requests."
        ),
    )
    min_requests: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description=(
            "Fewer requests than this to the new colour in a step is too few to judge: the step is inconclusive "
            "and the canary pauses instead of guessing."
        ),
    )
    error_statuses: list[Annotated[int, Field(ge=400, le=499)]] = Field(
        default_factory=lambda: [401, 403, 404, 429],
        max_length=100,
        description=(
            "HTTP statuses below 500 that count as failed live requests in the bake, the canary analysis and the "
            "reports, besides every 5xx and a request that got no answer: 401/403 (an API-key drift), 404 (a "
            "served-model-name drift) and 429 (refused load) by default. [] counts only 5xx."
        ),
    )
    ttft_p95: Duration | None = Field(
        default=None,
        description="Model metrics: maximum p95 time to first token of a colour, from vLLM's /metrics histograms.",
    )
    itl_p95: Duration | None = Field(
        default=None, description="Model metrics: maximum p95 inter-token latency of a colour, from vLLM's /metrics."
    )
    max_queue: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Model metrics: most requests a colour may keep waiting (vllm:num_requests_waiting, peak).",
    )
    ttft_p95_vs_live: float | None = Field(
        default=None, gt=1, le=100, description="The new colour's TTFT p95 may be at most this many times the old's."
    )
    itl_p95_vs_live: float | None = Field(
        default=None, gt=1, le=100, description="The new colour's ITL p95 may be at most this many times the old's."
    )
    max_queue_vs_live: float | None = Field(
        default=None,
        gt=1,
        le=100,
        description="The new colour's peak queue may be at most this many times the old's (when the old queues).",
    )


COHORT_BY_PATTERN = r"^(header:[A-Za-z0-9][A-Za-z0-9-]{0,63}|cookie:[A-Za-z0-9_]{1,64}|ip)$"


class Cohort(_Section):
    """Sticky canary cohorts: the split is keyed by nginx's hash of one request attribute, not per request."""

    by: str = Field(
        pattern=COHORT_BY_PATTERN,
        description=(
            "What identifies a user: header:NAME (e.g. header:X-User-Id, header:Authorization), cookie:NAME, or "
            "ip (the client address nginx sees). One user stays on one colour for a whole step and only moves "
            "forward to the new colour as its weight grows. Only the colour is logged, never the value."
        ),
    )
    fallback: Literal["request", "live"] = Field(
        default="request",
        description="Requests without the header or cookie: request: split per request; live: the old colour.",
    )


class Rollout(_Section):
    """How traffic moves from blue to green."""

    strategy: Literal["all-at-once", "canary"] = Field(
        default="all-at-once", description="all-at-once: one switch. canary: the weights in steps."
    )
    steps: list[CanaryStep] = Field(default_factory=list, description="Canary steps (strategy: canary only).")
    smoke: list[str] = Field(
        default_factory=list, description="Validation prompts re-run through the live endpoint after the switch."
    )
    bake: Duration = Field(
        default=duration_default("60s"), description="Watch live traffic this long after the full switch."
    )
    rollback_on: RollbackOn = Field(default_factory=RollbackOn, description="Limits that trigger a rollback.")
    drain_timeout: Duration = Field(
        default=duration_default("120s"),
        description="Let the old colour finish in-flight requests this long before stopping it.",
    )
    auto_promote: bool = Field(
        default=True,
        description=(
            "Canary: move to the next step by itself when a step's bake passes. false: pause after each step "
            "until `bgdeploy promote` (or `abort`)."
        ),
    )
    analysis_interval: Duration = Field(
        default=duration_default("10s"),
        description="Canary and bake: how often live traffic is checked against rollback_on.",
    )
    keep_previous: Literal["running", "stopped", "removed"] = Field(
        default="stopped",
        description=(
            "running: hot standby. stopped: kept for rollback, frees the GPU. removed: deleted after the deploy."
        ),
    )
    fleet: Fleet = Field(default_factory=Fleet, description="Batches of a fleet deploy (target.hosts).")
    cohort: Cohort | None = Field(
        default=None,
        description="Canary: keep each user on one colour (sticky cohorts) instead of splitting per request.",
    )


class PrometheusQuery(_Section):
    """One PromQL query judged during the bake and every canary step; give max or min."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, populate_by_name=True)

    name: str = Field(pattern=PROMPT_NAME_PATTERN, description="Name of the query in reports.")
    query: str = Field(
        min_length=1,
        description=(
            "PromQL; {colour}, {name} (the deployment) and {container} (the colour's container) are replaced "
            "for each colour. A vector's largest sample is its value."
        ),
    )
    max: float | None = Field(default=None, description="The new colour's value may be at most this.")
    min: float | None = Field(default=None, description="The new colour's value must be at least this.")
    # Aliased: `for` is a Python keyword.
    for_: Duration = Field(
        default=duration_default("0s"),
        alias="for",
        description="The limit must be broken this long without a break before it counts (0: at once).",
    )


class Prometheus(_Section):
    """Prometheus as an analysis provider (like Argo Rollouts' metric providers)."""

    url: str = Field(pattern=r"^https?://[^\s]+$", description="Base URL of the Prometheus HTTP API.")
    via: Literal["runner", "host"] = Field(
        default="runner",
        description="runner: the runner reaches the URL. host: through the SSH connection, as the GPU host sees it.",
    )
    bearer_token_env: str | None = Field(
        default=None,
        pattern=ENV_NAME_PATTERN,
        description="Name of the runner's environment variable holding a bearer token (never printed).",
    )
    timeout: Duration = Field(default=duration_default("10s"), description="Timeout of one query.")
    queries: list[PrometheusQuery] = Field(min_length=1, description="The queries and their limits.")


class Analysis(_Section):
    """Extra analysis providers for the bake and the canary steps."""

    prometheus: Prometheus | None = Field(default=None, description="PromQL queries with limits.")


class Report(_Section):
    """Where results are reported."""

    pr_comment: bool = Field(default=True, description="Keep one comment on the pull request up to date.")
    environment: str = Field(
        default="production", pattern=ENVIRONMENT_PATTERN, description="GitHub Deployments environment."
    )
    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description=(
            "The address clients use (e.g. your load balancer in front of the router): the action's `url` output "
            "and the GitHub Deployment's environment_url (its View deployment link)."
        ),
    )


class Spec(_Section):
    """bluegreen.yaml: a blue-green deploy of one model on one GPU server."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, title="bluegreen.yaml")

    version: Literal[1] = Field(description="Version of this file format; only 1 exists.")
    name: str = Field(
        pattern=NAME_PATTERN,
        description="Deployment name (DNS-safe): names containers, router config, state dir and PR comment.",
    )
    target: Target = Field(description="The GPU server.")
    model: Model = Field(description="The model to serve.")
    runtime: Runtime = Field(description="The server container.")
    gpus: Gpus = Field(default_factory=Gpus, description="GPUs of each colour.")
    router: Router = Field(default_factory=Router, description="The router in front of both colours.")
    health: Health = Field(default_factory=Health, description="Readiness checks.")
    validation: Validation = Field(default_factory=Validation, description="Validation before the switch.")
    rollout: Rollout = Field(default_factory=Rollout, description="How traffic moves.")
    analysis: Analysis = Field(default_factory=Analysis, description="Analysis providers (Prometheus).")
    report: Report = Field(default_factory=Report, description="Reporting.")
