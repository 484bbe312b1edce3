"""Judge a spec against a host policy: every violation, located in the spec file. Pure.

The host's part (reading the file, resolving bind sources through symlinks) happens in `policy.host`; here
the resolved paths are only an input, so the rules are unit tested with hostile specs and no host at all.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bgdeploy.errors import Problem
from bgdeploy.policy.globs import any_match
from bgdeploy.policy.models import Policy, VolumeRule
from bgdeploy.spec.images import is_image_ref, parse_image
from bgdeploy.spec.models import Spec, size_bytes
from bgdeploy.spec.server_flags import flag_of, names_flag
from bgdeploy.spec.yaml_source import Located, Path, dotted

NO_POLICY_WARNING = (
    "no host policy at {path}: any spec that reaches this host can run any image with any mounts as the deploy "
    "user (root-equivalent through Docker); the host's admin should write one (README: Host policy)"
)

_DANGEROUS_SOURCES = {
    "/": "the host's whole file system",
    "/var/run/docker.sock": "the Docker socket (root on the host)",
    "/run/docker.sock": "the Docker socket (root on the host)",
    "/etc": "the host's configuration",
    "/root": "root's home",
    "/proc": "the host's processes",
    "/sys": "the host's kernel interfaces",
    "/dev": "the host's devices",
}


@dataclass(frozen=True)
class PolicyVerdict:
    """What `plan` shows and what every changing command enforces."""

    path: str
    found: bool
    problems: list[Problem] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if not self.found:
            return NO_POLICY_WARNING.format(path=self.path)
        if self.allowed:
            return f"allowed by the host policy {self.path}"
        count = len(self.problems)
        return f"refused by the host policy {self.path}: {count} violation{'s' if count != 1 else ''}"


def evaluate(
    spec: Spec,
    located: Located,
    policy: Policy,
    policy_path: str,
    resolved: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Every way `spec` breaks `policy`; `resolved` maps bind sources to their real path on the host."""
    found: list[Problem] = []
    fix = f"ask the host's admin to allow it in {policy_path}"

    def add(path: Path, message: str, *, key: bool = False) -> None:
        line, col = located.locate(path, key=key)
        found.append(Problem(dotted(path), message, line, col))

    if policy.names is not None and not any_match(policy.names, spec.name):
        add(
            ("name",),
            f"the deployment name {spec.name!r} is not allowed on this host (names: "
            f"{_shown(policy.names)}); use an allowed name or {fix}",
        )
    if policy.models is not None and not any_match(policy.models, spec.model.name):
        add(
            ("model", "name"),
            f"the model {spec.model.name!r} is not allowed on this host (models: "
            f"{_shown(policy.models)}); use an allowed model or {fix}",
        )

    if policy.models is not None:
        # `vllm serve` takes a bare model name and lets it win over --model, so `args: [--enforce-eager, evil/m]`
        # would serve a model the policy never saw. Whether a bare word is a flag's value cannot be told without
        # vLLM's own flag list: under a models rule, flag values are written --flag=value.
        for index, arg in enumerate(spec.runtime.args):
            if not arg.startswith("-"):
                add(
                    ("runtime", "args", index),
                    f"the bare argument {arg!r} is refused on this host (it limits models, and vLLM reads a bare "
                    "word as the model to serve); write the flag and its value as one argument, --flag=value",
                )

    _check_image(add, ("runtime", "image"), spec.runtime.image, policy.images, "images", policy, fix)
    if spec.router.mode == "container":
        patterns = policy.router.images if policy.router.images is not None else policy.images
        key = "router.images" if policy.router.images is not None else "images"
        _check_image(add, ("router", "image"), spec.router.image, patterns, key, policy, fix)

    for index, volume in enumerate(spec.runtime.volumes):
        problem = _volume_problem(volume, policy.volumes, resolved or {})
        if problem:
            add(("runtime", "volumes", index), f"{problem}; {fix}")

    for name in spec.runtime.env:
        if any_match(policy.env_deny, name):
            add(
                ("runtime", "env", name),
                f"setting {name} is denied on this host (env_deny: "
                f"{_shown(policy.env_deny)}): it changes what code the server runs; remove it",
                key=True,
            )
    for index, name in enumerate(spec.runtime.secret_env):
        if any_match(policy.env_deny, name):
            add(
                ("runtime", "secret_env", index),
                f"setting {name} is denied on this host (env_deny: {_shown(policy.env_deny)}); remove it",
            )

    if policy.gpus is not None:
        # The NVIDIA runtime also takes its GPUs and driver capabilities from the container's environment
        # (NVIDIA_VISIBLE_DEVICES=all); with gpus: [] no device request overrides it.
        for name in spec.runtime.env:
            if _selects_gpus(name):
                add(
                    ("runtime", "env", name),
                    f"setting {name} is denied on this host: the NVIDIA runtime would give the container GPUs "
                    f"outside the spec's gpus (this host allows {', '.join(map(str, policy.gpus)) or 'none'}); "
                    "remove it and list the GPUs under gpus",
                    key=True,
                )
        for index, name in enumerate(spec.runtime.secret_env):
            if _selects_gpus(name):
                add(
                    ("runtime", "secret_env", index),
                    f"setting {name} is denied on this host: the NVIDIA runtime would give the container GPUs "
                    "outside the spec's gpus; remove it and list the GPUs under gpus",
                )
        for colour in ("blue", "green"):
            indices = spec.gpus.blue if colour == "blue" else spec.gpus.green
            outside = [i for i in indices if i not in policy.gpus]
            if outside:
                add(
                    ("gpus", colour),
                    f"GPU {', '.join(map(str, outside))} may not be used on this host (gpus: "
                    f"{', '.join(map(str, policy.gpus)) or 'none'}); use only allowed GPUs or {fix}",
                )

    if spec.runtime.gpu_memory_utilization > policy.max_gpu_memory_utilization:
        add(
            ("runtime", "gpu_memory_utilization"),
            f"{spec.runtime.gpu_memory_utilization:g} is above this host's "
            f"max_gpu_memory_utilization {policy.max_gpu_memory_utilization:g}; lower it or {fix}",
        )
    shm = spec.runtime.shm_size
    if policy.shm_size_max is not None and shm is not None and size_bytes(shm) > size_bytes(policy.shm_size_max):
        add(
            ("runtime", "shm_size"),
            f"{spec.runtime.shm_size} is above this host's shm_size_max {policy.shm_size_max}; lower it or {fix}",
        )
    for key, items in (("args", spec.runtime.args), ("command", spec.runtime.command or [])):
        for index, arg in enumerate(items):
            if _denied_arg(policy.args_deny, arg):
                add(
                    ("runtime", key, index),
                    f"the server argument {arg[:80]!r} is denied on this host (args_deny: "
                    f"{_shown(policy.args_deny)}); remove it or {fix}",
                )
    if spec.runtime.command is not None and not policy.command_override:
        add(
            ("runtime", "command"),
            f"replacing the server's command line is not allowed on this host "
            f"(command_override: false); use runtime.args instead or {fix}",
            key=True,
        )

    router = policy.router
    if spec.router.mode not in router.modes:
        add(
            ("router", "mode"),
            f"router mode {spec.router.mode} is not allowed on this host (router.modes: "
            f"{', '.join(router.modes) or 'none'}); use an allowed mode or {fix}",
        )
    if router.listen is not None and spec.router.listen not in router.listen:
        add(
            ("router", "listen"),
            f"port {spec.router.listen} is not allowed on this host (router.listen: "
            f"{', '.join(map(str, router.listen)) or 'none'}); use an allowed port or {fix}",
        )
    if router.binds is not None and spec.router.bind not in router.binds:
        add(
            ("router", "bind"),
            f"address {spec.router.bind} is not allowed on this host (router.binds: "
            f"{', '.join(router.binds) or 'none'}); use an allowed address or {fix}",
        )
    if spec.router.mode == "host" and spec.router.config_path is not None:
        path = spec.router.config_path
        normal = posixpath.normpath(path)
        if normal != path or not any_match(router.config_paths, path):
            allowed = _shown(router.config_paths) if router.config_paths else "only the default path"
            add(
                ("router", "config_path"),
                f"{path} may not be written on this host (router.config_paths: "
                f"{allowed}); remove router.config_path to use /etc/nginx/conf.d/bgdeploy-{spec.name}.conf, or {fix}",
            )
    return sorted(found, key=lambda p: (p.line, p.column, p.path))


def _selects_gpus(name: str) -> bool:
    """NVIDIA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES, NVIDIA_MIG_*...: the Container Toolkit's selectors
    (NVIDIA_REQUIRE_* and NVIDIA_DISABLE_REQUIRE only check the driver's version)."""
    return name.startswith("NVIDIA_") and not name.startswith(("NVIDIA_REQUIRE_", "NVIDIA_DISABLE_REQUIRE"))


def _denied_arg(patterns: list[str], arg: str) -> bool:
    """Whether an argument is denied: as written, by its flag, or by any spelling vLLM reads as a denied flag
    (`--trust_remote_code`, the abbreviation `--trust-remote`)."""
    flag = arg.split("=", 1)[0]
    if any_match(patterns, arg, flag, flag_of(arg) or flag):
        return True
    for pattern in patterns:
        literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
        if literal.startswith("--") and names_flag(arg, literal):
            return True
    return False


def _shown(patterns: list[str]) -> str:
    text = ", ".join(patterns) if patterns else "none"
    return text if len(text) <= 200 else text[:197] + "..."


def _check_image(
    add: Callable[[Path, str], None], path: Path, image: str, patterns: list[str], key: str, policy: Policy, fix: str
) -> None:
    where = dotted(path)
    if not is_image_ref(image):
        return  # the spec's own pattern reports it
    ref = parse_image(image)
    if not any_match(patterns, image, ref.familiar):
        add(
            path,
            f"the image {image} is not allowed on this host ({key}: {_shown(patterns)}); use an allowed image or {fix}",
        )
    if policy.require_digest and not ref.pinned:
        add(
            path,
            f"this host requires images pinned by digest (require_digest: true); write {where} as "
            f"{ref.repository}@sha256:<digest> (`docker buildx imagetools inspect {image}` shows it)",
        )


def _split_volume(volume: str) -> tuple[str, str, str]:
    parts = volume.split(":")
    mode = parts[2] if len(parts) == 3 else "rw"
    return parts[0], parts[1], mode


def _covers(rule: VolumeRule, source: str) -> bool:
    if not rule.host.startswith("/"):
        return source == rule.host
    base = posixpath.normpath(rule.host)
    return source == base or source.startswith(base.rstrip("/") + "/")


def _volume_problem(volume: str, rules: list[VolumeRule], resolved: Mapping[str, str]) -> str | None:
    source, _, mode = _split_volume(volume)
    written = source
    if source.startswith("/"):
        # '.' too: the host resolves the source as written, so a normalised one would miss its symlink.
        segments = source.split("/")
        if ".." in segments or "." in segments or "//" in source or (source != "/" and source.endswith("/")):
            return f"the bind source {source} is not a plain absolute path (no '.', '..', '//' or trailing '/')"
        source = posixpath.normpath(source)
    danger = _DANGEROUS_SOURCES.get(source)
    what = f" (it exposes {danger})" if danger else ""
    allowed = [r for r in rules if _covers(r, source)]
    if not allowed:
        listed = ", ".join(f"{r.host} ({r.mode})" for r in rules) or "none"
        return f"mounting {source} is not allowed on this host{what} (volumes: {listed})"
    if mode == "rw" and all(r.mode == "ro" for r in allowed):
        return (
            f"{source} may only be mounted read-only on this host; write the volume as {volume.rsplit(':rw', 1)[0]}:ro"
        )
    real = resolved.get(written, resolved.get(source))
    if (
        real is not None
        and real != source
        and not any(_covers(r, real) and (mode == "ro" or r.mode == "rw") for r in rules)
    ):
        return f"the bind source {source} resolves to {real} on the host (a symlink), which is not allowed"
    return None
