"""The hosts of a fleet spec, each with the single-host spec the one-host cycle runs on it. Pure: no I/O.

A member's spec is the fleet spec with target.host (and port, host key, GPUs) of that host filled in and
the fleet keys removed, so its spec hash does not change when hosts are added or batches resized: a host
whose release is already live stays unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from bgdeploy.errors import UsageError
from bgdeploy.spec.fleet_rules import member_label
from bgdeploy.spec.models import Fleet, Spec


@dataclass(frozen=True)
class Member:
    index: int  # position in target.hosts
    label: str
    host: str
    port: int
    spec: Spec  # the single-host spec of this member

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def is_fleet(spec: Spec) -> bool:
    return spec.target.hosts is not None


def members(spec: Spec) -> list[Member]:
    """Every host of target.hosts with its own spec (a single-host spec gives itself as the one member)."""
    t = spec.target
    if t.hosts is None:
        host = t.host or "localhost"
        return [Member(0, member_label(host, t.port), host, t.port, spec)]
    out = []
    for i, h in enumerate(t.hosts):
        port = h.port or t.port
        own_pin = h.host_key is not None or h.known_hosts is not None
        target = t.model_copy(
            update={
                "host": h.host,
                "port": port,
                "host_key": h.host_key if own_pin else t.host_key,
                "known_hosts": h.known_hosts if own_pin else t.known_hosts,
                "hosts": None,
            }
        )
        update: dict[str, object] = {"target": target, "rollout": spec.rollout.model_copy(update={"fleet": Fleet()})}
        if h.gpus is not None:
            update["gpus"] = h.gpus
        out.append(Member(i, h.label or member_label(h.host, port), h.host, port, spec.model_copy(update=update)))
    return out


def select(all_members: list[Member], wanted: str | None) -> list[Member]:
    """The one member --host names (its label, its address or its host name), or all of them.

    A label is exact (labels are unique), so it wins; otherwise the name must fit exactly one host: two hosts
    behind one name (two ports of one address, or a label that is another host's address) are refused rather
    than the first one picked.
    """
    if wanted is None:
        return all_members
    found = [m for m in all_members if m.label == wanted]
    if not found:
        found = [m for m in all_members if m.address == wanted] or [m for m in all_members if m.host == wanted]
    if not found:
        known = ", ".join(m.label for m in all_members)
        raise UsageError(f"--host {wanted}: no such host in target.hosts (known: {known})")
    if len(found) > 1:
        raise UsageError(
            f"--host {wanted} names {len(found)} hosts ({', '.join(m.label for m in found)}); "
            "give one label or HOST:PORT"
        )
    return found


def lock_key(host: str) -> str:
    """A host name as DNS compares it: case and a trailing dot do not make another host."""
    return host.lower().rstrip(".")


def where(member: Member, resolve: Callable[[str], str] | None = None) -> tuple[str, int]:
    """The machine a member is, as far as this side can tell: its IP address (by `resolve`; a name it cannot
    resolve stays its normalised spelling) and its SSH port."""
    name = lock_key(member.host)
    if resolve is not None:
        with contextlib.suppress(OSError, KeyError, UnicodeError):
            name = resolve(member.host)
    return name, member.port


def lock_order(chosen: list[Member], resolve: Callable[[str], str] | None = None) -> list[Member]:
    """The order locks are taken in: by address, the same for every spec that names these hosts, so two
    fleet deploys over overlapping hosts cannot each hold a lock the other waits for.

    `resolve` gives a host's IP address, so `10.0.0.2` and a name for it sort alike; a name it cannot resolve
    sorts by its normalised spelling.
    """
    return sorted(chosen, key=lambda m: where(m, resolve))
