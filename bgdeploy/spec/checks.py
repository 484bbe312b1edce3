"""Rules across several fields of a structurally valid spec. Each returns every finding, with its path.

Pure: no I/O. A finding says what is wrong, why it matters for a deploy, and the fix.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import string
from collections.abc import Callable, Iterator

from bgdeploy.spec.host_key import parse_public_key
from bgdeploy.spec.models import COMMAND_PLACEHOLDERS, GENERATED_FLAGS, Spec
from bgdeploy.spec.router_rules import health_path_findings, read_timeout_findings

Finding = tuple[tuple[str | int, ...], str]

# vLLM needs the memory of both colours at once while they share a GPU; leave headroom for the CUDA context.
SHARED_GPU_BUDGET = 0.95


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _target(spec: Spec) -> Iterator[Finding]:
    t = spec.target
    if t.transport == "ssh":
        if t.host is None:
            yield ("target", "host"), "target.host is required with transport: ssh; set the GPU server's name or IP"
        if t.host_key is None and t.known_hosts is None:
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
        flag = arg.split("=", 1)[0]
        if flag in GENERATED_FLAGS:
            yield (
                ("runtime", "args", i),
                (f"{flag} is generated from {GENERATED_FLAGS[flag]}; set that key instead of passing the flag"),
            )
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


def _prompts(spec: Spec) -> Iterator[Finding]:
    names: dict[str, int] = {}
    for i, p in enumerate(spec.validation.prompts):
        where: tuple[str | int, ...] = ("validation", "prompts", i)
        if p.name in names:
            yield (*where, "name"), f"prompt name {p.name!r} is already used by prompt #{names[p.name] + 1}"
        names.setdefault(p.name, i)
        if (p.chat is None) == (p.prompt is None):
            yield where, "give exactly one of chat (a chat message) or prompt (a raw completion prompt)"
        if p.system is not None and p.chat is None:
            yield (*where, "system"), "system is only used with chat"
        if p.expect.regex is not None:
            try:
                re.compile(p.expect.regex)
            except re.error as exc:
                yield (*where, "expect", "regex"), f"invalid regular expression: {exc}"
    for i, smoke in enumerate(spec.rollout.smoke):
        if smoke not in names:
            known = list(names)
            hint = did_you_mean(smoke, known) or (
                f"; known prompts: {', '.join(known)}" if known else "; no validation prompts are defined"
            )
            yield ("rollout", "smoke", i), f"no validation prompt is named {smoke!r}{hint}"


def _rollout(spec: Spec) -> Iterator[Finding]:
    r = spec.rollout
    if r.strategy != "canary" and r.steps:
        yield ("rollout", "steps"), "steps are only used with strategy: canary; set strategy: canary or remove them"
    if r.strategy == "canary" and not r.steps:
        yield ("rollout", "strategy"), "strategy: canary needs rollout.steps, e.g. [{weight: 10, bake: 2m}]"
    for i in range(1, len(r.steps)):
        if r.steps[i].weight <= r.steps[i - 1].weight:
            yield (
                ("rollout", "steps", i, "weight"),
                (f"canary weights must increase step by step: {r.steps[i].weight} follows {r.steps[i - 1].weight}"),
            )


# Each check with the keys it reads: a check is skipped when one of them had a schema error, since it
# would then see a default in place of the broken value and could report nonsense.
CHECKS: tuple[tuple[tuple[str, ...], Callable[[Spec], Iterator[Finding]]], ...] = (
    (("target.host", "target.host_key", "target.known_hosts", "target.transport"), _target),
    (("gpus", "runtime.gpu_memory_utilization"), _gpus),
    (("runtime.args", "runtime.command", "runtime.env", "runtime.secret_env", "runtime.api_key_env"), _runtime),
    (("router.bind",), _router),
    (("health.timeout", "health.ready_timeout"), _health_timeout),
    (("health.interval", "health.ready_timeout"), _health_interval),
    (("validation.prompts", "rollout.smoke"), _prompts),
    (("rollout.strategy", "rollout.steps"), _rollout),
    (("health.path",), health_path_findings),
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
