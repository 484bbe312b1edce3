"""Rules across several fields of a structurally valid spec. Each returns every finding, with its path.

Pure: no I/O. A finding says what is wrong, why it matters for a deploy, and the fix.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import string
from collections.abc import Callable, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from bgdeploy.spec.analysis_rules import analysis_findings
from bgdeploy.spec.fleet_rules import fleet_findings, rollout_fleet_findings
from bgdeploy.spec.host_key import parse_public_key
from bgdeploy.spec.models import COMMAND_PLACEHOLDERS, GENERATED_FLAGS, Prompt, Spec
from bgdeploy.spec.replay_rules import replay_findings
from bgdeploy.spec.router_rules import health_path_findings, read_timeout_findings
from bgdeploy.spec.server_flags import names_flag

Finding = tuple[tuple[str | int, ...], str]

# vLLM needs the memory of both colours at once while they share a GPU; leave headroom for the CUDA context.
SHARED_GPU_BUDGET = 0.95


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _target(spec: Spec) -> Iterator[Finding]:
    t = spec.target
    if t.transport == "ssh":
        if t.host is None and t.hosts is None:
            yield (
                ("target", "host"),
                "target.host is required with transport: ssh; set the GPU server's name or IP (or target.hosts)",
            )
        if t.host_key is None and t.known_hosts is None and t.hosts is None:  # a fleet pins per host
            yield (
                ("target",),
                (
                    "the server's host key must be pinned with transport: ssh; add target.host_key (one line of "
                    "`ssh-keyscan -t ed25519 HOST` without the host name) or target.known_hosts"
                ),
            )
    if t.host_key is not None and t.known_hosts is not None:
        yield ("target", "known_hosts"), "give target.host_key or target.known_hosts, not both"
    if t.host_key is not None:
        try:
            parse_public_key(t.host_key)
        except ValueError as exc:
            yield ("target", "host_key"), f"invalid host key: {exc}"
    if t.jump is not None:
        if t.transport == "local":
            yield ("target", "jump"), "a jump host is for transport: ssh; remove target.jump with transport: local"
        try:
            parse_public_key(t.jump.host_key)
        except ValueError as exc:
            yield ("target", "jump", "host_key"), f"invalid host key of the jump host: {exc}"


def _gpus(spec: Spec) -> Iterator[Finding]:
    shared = sorted(set(spec.gpus.blue) & set(spec.gpus.green))
    util = spec.runtime.gpu_memory_utilization
    if shared and 2 * util > SHARED_GPU_BUDGET + 1e-9:
        names = ", ".join(str(g) for g in shared)
        most = int(SHARED_GPU_BUDGET / 2 * 100) / 100
        yield (
            ("runtime", "gpu_memory_utilization"),
            (
                f"blue and green share GPU {names}, so both colours need {util:g} of its memory at once during "
                f"the switch ({2 * util:g} in all, more than {SHARED_GPU_BUDGET}); set "
                f"runtime.gpu_memory_utilization to {most} or less, or give green other GPUs"
            ),
        )
    for colour, indices in (("blue", spec.gpus.blue), ("green", spec.gpus.green)):
        if len(set(indices)) != len(indices):
            yield ("gpus", colour), f"gpus.{colour} lists a GPU twice; list each index once"


def _runtime(spec: Spec) -> Iterator[Finding]:
    r = spec.runtime
    for i, arg in enumerate(r.args):
        # Any spelling vLLM reads as a generated flag (--gpu_memory_utilization, --gpu-memory-util): the last
        # one wins, so it would override the key (and a host policy's limit on it).
        for flag, key in GENERATED_FLAGS.items():
            if names_flag(arg, flag):
                written = arg.split("=", 1)[0]
                what = flag if written == flag else f"{written} (vLLM reads it as {flag})"
                yield (
                    ("runtime", "args", i),
                    f"{what} is generated from {key}; set that key instead of passing the flag",
                )
                break
    for i, part in enumerate(r.command or []):
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(part) if name is not None]
        except ValueError as exc:
            yield ("runtime", "command", i), f"bad placeholder syntax ({exc}); write {{{{ and }}}} for braces"
            continue
        for name in fields:
            if name not in COMMAND_PLACEHOLDERS:
                known = ", ".join("{" + p + "}" for p in COMMAND_PLACEHOLDERS)
                yield (
                    ("runtime", "command", i),
                    (f"unknown placeholder {{{name}}}; known: {known}{did_you_mean(name, list(COMMAND_PLACEHOLDERS))}"),
                )
    seen: set[str] = set()
    for i, name in enumerate(r.secret_env):
        if name in seen:
            yield ("runtime", "secret_env", i), f"{name} is listed twice"
        seen.add(name)
        if name in r.env:
            yield (
                ("runtime", "secret_env", i),
                (f"{name} is also in runtime.env; a secret's value must come only from the runner's environment"),
            )
    if r.api_key_env is not None and r.api_key_env not in r.secret_env:
        yield (
            ("runtime", "api_key_env"),
            (f"{r.api_key_env} must also be listed in runtime.secret_env so the container receives it"),
        )


def _router(spec: Spec) -> Iterator[Finding]:
    try:
        ipaddress.ip_address(spec.router.bind)
    except ValueError:
        yield ("router", "bind"), f"{spec.router.bind!r} is not an IP address; use e.g. 0.0.0.0 or 127.0.0.1"


def _health_timeout(spec: Spec) -> Iterator[Finding]:
    if spec.health.timeout >= spec.health.ready_timeout:
        yield ("health", "timeout"), "health.timeout must be shorter than health.ready_timeout"


def _health_interval(spec: Spec) -> Iterator[Finding]:
    h = spec.health
    if h.interval >= h.ready_timeout:
        yield ("health", "interval"), "health.interval must be shorter than health.ready_timeout"
    if h.interval <= 0:
        yield ("health", "interval"), "health.interval must be more than 0"


def prompt_findings(p: Prompt) -> Iterator[Finding]:
    """The rules of one prompt that relate its keys; paths are relative to the prompt (inline or a dataset line)."""
    given = [key for key in ("chat", "messages", "prompt") if getattr(p, key) is not None]
    if len(given) != 1:
        yield (), (
            "give exactly one of chat (a chat message), messages (a conversation) or prompt (a raw completion prompt)"
            + (f"; this one gives {' and '.join(given)}" if given else "")
        )
    if p.prompt is not None:
        for key in ("system", "tools", "tool_choice", "response_format"):
            if getattr(p, key) is not None:
                yield (key,), f"{key} is only used with chat or messages, not with a raw prompt"
    if p.messages is not None and p.messages[-1].role == "assistant":
        yield ("messages", len(p.messages) - 1, "role"), "the last turn is the assistant's; end with a user turn"
    if p.tool_choice is not None and p.tools is None:
        yield ("tool_choice",), "tool_choice needs tools: list the functions the model may call"
    if p.expect.regex is not None:
        try:
            re.compile(p.expect.regex)
        except re.error as exc:
            yield ("expect", "regex"), f"invalid regular expression: {exc}"
    call = p.expect.tool_call
    schemas: list[tuple[tuple[str | int, ...], dict[str, object] | None]] = [
        (("expect", "json_schema"), p.expect.json_schema),
        (("expect", "tool_call", "arguments_schema"), call.arguments_schema if call else None),
    ]
    for where, schema in schemas:
        problem = schema_problem(schema) if schema is not None else None
        if problem:
            yield where, f"not a valid JSON Schema: {problem}"
    if call is not None:
        offered = [_tool_name(t) for t in p.tools or []]
        if p.tools is None:
            yield ("expect", "tool_call"), "expect.tool_call needs tools: offer the function in the prompt's tools"
        elif call.name not in offered:
            yield (
                ("expect", "tool_call", "name"),
                f"{call.name!r} is not among the prompt's tools{did_you_mean(call.name, [n for n in offered if n])}",
            )
        if p.tool_choice == "none":
            yield ("tool_choice",), "tool_choice: none forbids the tool call that expect.tool_call wants"


def _tool_name(tool: dict[str, object]) -> str:
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else ""


def schema_problem(schema: dict[str, object]) -> str | None:
    """Why `schema` is not a JSON Schema (Draft 2020-12), or None."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return exc.message
    return None


def _prompts(spec: Spec) -> Iterator[Finding]:
    names: dict[str, int] = {}
    for i, p in enumerate(spec.validation.prompts):
        where: tuple[str | int, ...] = ("validation", "prompts", i)
        if p.name in names:
            yield (*where, "name"), f"prompt name {p.name!r} is already used by prompt #{names[p.name] + 1}"
        names.setdefault(p.name, i)
        for path, message in prompt_findings(p):
            yield (*where, *path), message
    for i, smoke in enumerate(spec.rollout.smoke):
        if smoke not in names:
            known = list(names)
            hint = did_you_mean(smoke, known) or (
                f"; known prompts: {', '.join(known)}" if known else "; no validation prompts are defined"
            )
            yield ("rollout", "smoke", i), f"no validation prompt is named {smoke!r}{hint}"


def _validation_gates(spec: Spec) -> Iterator[Finding]:
    """Gates that need something the spec turned off: streaming for TTFT/ITL, compare_with_live for _vs_live."""
    v = spec.validation
    t = v.thresholds
    if not v.stream:
        for key in ("ttft_p95", "itl_p95", "max_ttft_p95_vs_live", "max_itl_p95_vs_live"):
            if getattr(t, key) is not None:
                yield (
                    ("validation", "thresholds", key),
                    f"{key} needs streamed validation; remove validation.stream: false or this threshold",
                )
    if not v.compare_with_live:
        for key in (
            "min_pass_rate_vs_live",
            "max_ttft_p95_vs_live",
            "max_itl_p95_vs_live",
            "max_latency_p95_vs_live",
            "min_agreement_with_live",
        ):
            if getattr(t, key) is not None:
                yield (
                    ("validation", "thresholds", key),
                    f"{key} compares green with the live colour; set validation.compare_with_live: true or remove it",
                )
    paths: dict[str, int] = {}
    for i, dataset in enumerate(v.datasets):
        if dataset.path in paths:
            yield ("validation", "datasets", i, "path"), f"{dataset.path} is already dataset #{paths[dataset.path] + 1}"
        paths.setdefault(dataset.path, i)


def _rollout(spec: Spec) -> Iterator[Finding]:
    r = spec.rollout
    if r.strategy != "canary" and r.steps:
        yield ("rollout", "steps"), "steps are only used with strategy: canary; set strategy: canary or remove them"
    if r.strategy == "canary" and not r.steps:
        yield ("rollout", "strategy"), "strategy: canary needs rollout.steps, e.g. [{weight: 10, bake: 2m}]"
    if r.cohort is not None and r.strategy != "canary":
        yield (
            ("rollout", "cohort"),
            "cohort only applies to a canary (all-at-once moves every user at once); set strategy: canary or remove it",
        )
    for i in range(1, len(r.steps)):
        if r.steps[i].weight <= r.steps[i - 1].weight:
            yield (
                ("rollout", "steps", i, "weight"),
                (f"canary weights must increase step by step: {r.steps[i].weight} follows {r.steps[i - 1].weight}"),
            )


# Each check with the keys it reads: a check is skipped when one of them had a schema error, since it
# would then see a default in place of the broken value and could report nonsense.
CHECKS: tuple[tuple[tuple[str, ...], Callable[[Spec], Iterator[Finding]]], ...] = (
    (("target.host", "target.host_key", "target.known_hosts", "target.transport", "target.jump"), _target),
    (("gpus", "runtime.gpu_memory_utilization"), _gpus),
    (("runtime.args", "runtime.command", "runtime.env", "runtime.secret_env", "runtime.api_key_env"), _runtime),
    (("router.bind",), _router),
    (("health.timeout", "health.ready_timeout"), _health_timeout),
    (("health.interval", "health.ready_timeout"), _health_interval),
    (("validation.prompts", "rollout.smoke"), _prompts),
    (
        ("validation.stream", "validation.compare_with_live", "validation.thresholds", "validation.datasets"),
        _validation_gates,
    ),
    (("rollout.strategy", "rollout.steps", "rollout.cohort"), _rollout),
    (("analysis",), analysis_findings),
    (("target", "gpus", "runtime.gpu_memory_utilization"), fleet_findings),
    (("target.hosts", "rollout.fleet"), rollout_fleet_findings),
    (("health.path",), health_path_findings),
    (("validation.replay", "validation.thresholds"), replay_findings),
    (("router.read_timeout",), read_timeout_findings),
)


def _overlaps(read: str, broken: str) -> bool:
    return (
        not broken
        or read == broken
        or broken.startswith(read + ".")
        or read.startswith(broken + ".")
        or broken.startswith(read + "[")
    )


def cross_checks(spec: Spec, broken: tuple[str, ...] = ()) -> list[Finding]:
    """Every cross-field finding, leaving out checks that read a key named (dotted) in `broken`."""
    return [
        finding
        for reads, check in CHECKS
        if not any(_overlaps(read, b) for read in reads for b in broken)
        for finding in check(spec)
    ]
