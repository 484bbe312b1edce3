"""Which host a pull request's run may reach: the workflow's pins decide, never the PR's file. Pure.

In `mode: plan` or `mode: preview` on a pull request, the spec comes from the PR. Its `target` names the host
and pins that host's key, so without a check the PR could point the run (with the HF token and the API key of
`runtime.secret_env`) at a server of its own, or at a bastion of its own pinned inner key. When the workflow
passes `known-hosts` (BGDEPLOY_KNOWN_HOSTS: known_hosts lines), every host the run would reach must be listed
there, and every key the spec pins must be one listed for it; keys from a file in the PR's checkout
(`known_hosts:`) are refused, and so is `transport: local` (the runner itself).
"""

from __future__ import annotations

from collections.abc import Iterator

from bgdeploy.spec.models import Target


def _entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def workflow_pins(known_hosts: str) -> dict[str, set[tuple[str, str]]]:
    """known_hosts lines → host entry → {(key type, base64)}; hashed and marker lines are skipped."""
    pins: dict[str, set[tuple[str, str]]] = {}
    for line in known_hosts.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith(("#", "@", "|")):
            continue
        for name in fields[0].split(","):
            pins.setdefault(name, set()).add((fields[1], fields[2]))
    return pins


def _key(line: str) -> tuple[str, str]:
    fields = line.split()
    return (fields[0], fields[1]) if len(fields) >= 2 else (line, "")


def _hosts(target: Target) -> Iterator[tuple[str, str, int, str | None, str | None]]:
    """(where, host, port, pinned key, known_hosts file) of every host a run of this target reaches."""
    if target.hosts is not None:
        for i, member in enumerate(target.hosts):
            yield (
                f"target.hosts[{i}]",
                member.host,
                member.port or target.port,
                member.host_key or target.host_key,
                member.known_hosts or target.known_hosts,
            )
    elif target.host is not None:
        yield "target", target.host, target.port, target.host_key, target.known_hosts
    if target.jump is not None:
        yield "target.jump", target.jump.host, target.jump.port, target.jump.host_key, None


def pr_target_problems(target: Target, known_hosts: str) -> list[str]:
    """Why a pull request's run may not reach the hosts its spec names ([]: it may)."""
    if target.transport == "local":
        return ["target.transport: local runs on this runner; a pull request's run may only reach a pinned host"]
    pins = workflow_pins(known_hosts)
    problems = []
    for where, host, port, key, file in _hosts(target):
        entry = _entry(host, port)
        allowed = pins.get(entry, set())
        if not allowed:
            problems.append(f"{where}: {entry} is not in the workflow's known-hosts; a pull request cannot add a host")
        elif key is not None and _key(key) not in allowed:
            problems.append(f"{where}: the host key pinned for {entry} is not the one in the workflow's known-hosts")
        if file is not None:
            problems.append(
                f"{where}: known_hosts file {file} comes from the pull request; on a pull request only the "
                "workflow's known-hosts pins keys"
            )
    return problems
