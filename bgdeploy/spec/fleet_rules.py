"""Rules of a fleet spec (target.hosts, rollout.fleet) that relate several keys. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterator

from bgdeploy.spec.host_key import parse_public_key
from bgdeploy.spec.models import Gpus, Spec

Finding = tuple[tuple[str | int, ...], str]


def member_label(host: str, port: int) -> str:
    """The default label of a fleet host: its address, with the port when it is not 22."""
    return host if port == 22 else f"{host}:{port}"


def fleet_findings(spec: Spec) -> Iterator[Finding]:
    t = spec.target
    if t.hosts is None:
        return
    if t.host is not None:
        yield ("target", "hosts"), "give target.host (one server) or target.hosts (a fleet), not both"
    if t.transport == "local":
        yield ("target", "hosts"), "transport: local is this one machine; a fleet (target.hosts) needs transport: ssh"
    labels: dict[str, int] = {}
    addresses: dict[tuple[str, int], int] = {}
    for i, member in enumerate(t.hosts):
        where: tuple[str | int, ...] = ("target", "hosts", i)
        port = member.port or t.port
        label = member.label or member_label(member.host, port)
        if label in labels:
            yield (*where, "label"), f"label {label!r} is already used by host #{labels[label] + 1}; labels are unique"
        labels.setdefault(label, i)
        # As DNS compares names: GPU-A, gpu-a and gpu-a. are one host (two entries would deploy to it twice).
        address = (member.host.lower().rstrip("."), port)
        if address in addresses:
            yield (*where, "host"), f"{member.host}:{port} is already host #{addresses[address] + 1}"
        addresses.setdefault(address, i)
        if member.host_key is not None and member.known_hosts is not None:
            yield (*where, "known_hosts"), "give host_key or known_hosts, not both"
        if member.host_key is not None:
            try:
                parse_public_key(member.host_key)
            except ValueError as exc:
                yield (*where, "host_key"), f"invalid host key: {exc}"
        pinned = member.host_key or member.known_hosts or t.host_key or t.known_hosts
        if t.transport == "ssh" and not pinned:
            yield (
                where,
                (
                    f"the host key of {member.host} must be pinned: add host_key (one line of `ssh-keyscan -t "
                    "ed25519 HOST` without the host name) or known_hosts here or in target"
                ),
            )
        if member.gpus is not None:
            yield from (((*where, "gpus", *path[1:]), message) for path, message in gpu_findings(member.gpus, spec))


def gpu_findings(gpus: Gpus, spec: Spec) -> Iterator[Finding]:
    """A host's GPU override follows the rules of the top-level gpus (paths start with "gpus")."""
    from bgdeploy.spec.checks import SHARED_GPU_BUDGET

    shared = sorted(set(gpus.blue) & set(gpus.green))
    util = spec.runtime.gpu_memory_utilization
    if shared and 2 * util > SHARED_GPU_BUDGET + 1e-9:
        yield (
            ("gpus",),
            (
                f"blue and green share GPU {', '.join(str(g) for g in shared)} on this host, so both colours need "
                f"{util:g} of its memory at once during the switch; lower runtime.gpu_memory_utilization or give "
                "green other GPUs here"
            ),
        )
    for colour, indices in (("blue", gpus.blue), ("green", gpus.green)):
        if len(set(indices)) != len(indices):
            yield ("gpus", colour), f"gpus.{colour} lists a GPU twice; list each index once"


def rollout_fleet_findings(spec: Spec) -> Iterator[Finding]:
    f = spec.rollout.fleet
    hosts = spec.target.hosts
    if hosts is None:
        return
    if isinstance(f.first_batch, int) and f.first_batch > len(hosts):
        yield (
            ("rollout", "fleet", "first_batch"),
            f"first_batch is {f.first_batch} but the fleet has {len(hosts)} host(s); at most {len(hosts)}",
        )
    if f.max_failed_hosts >= len(hosts) and len(hosts) > 1:
        yield (
            ("rollout", "fleet", "max_failed_hosts"),
            (
                f"max_failed_hosts {f.max_failed_hosts} lets every one of the {len(hosts)} hosts fail without "
                f"stopping the rollout; at most {len(hosts) - 1}"
            ),
        )
    if "canary" in f.model_fields_set and spec.rollout.strategy != "canary":
        yield (
            ("rollout", "fleet", "canary"),
            "rollout.fleet.canary only applies to strategy: canary; set rollout.strategy: canary or remove it",
        )
