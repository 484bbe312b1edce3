"""What is deployed on one host, put together from what the host shows: the containers' labels, the
Docker networks, the state directories and the host-mode nginx includes. Pure: no network, no Docker.

Every piece of a deployment that lacks its partners is a leftover (a network or container with no state,
a state with no container), flagged with the command that cleans it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from bgdeploy.plan.names import COLOURS, LABEL_PREFIX
from bgdeploy.plan.state import HostState

NETWORK_PREFIX = "bgdeploy-"
_LISTEN_RE = re.compile(r"^\s*listen\s+(?:[\w.:\[\]-]+:)?(\d+)\b", re.MULTILINE)


@dataclass(frozen=True)
class SeenContainer:
    """A container bgdeploy labelled, as `docker inspect` shows it."""

    name: str
    status: str
    labels: dict[str, str]
    published_port: int | None = None

    def label(self, key: str) -> str:
        return self.labels.get(f"{LABEL_PREFIX}{key}", "")

    @property
    def deployment(self) -> str:
        return self.label("name")

    @property
    def role(self) -> str:
        """router, capture (the keeper that bounds captured requests), blue, green, or blue-previous /
        green-previous for a release set aside by a deploy."""
        if self.label("role") in ("router", "capture"):
            return self.label("role")
        colour = self.label("colour")
        return f"{colour}-previous" if self.name.endswith("-previous") else colour or "unknown"


@dataclass(frozen=True)
class SeenState:
    """A state directory: its state.json (empty when missing) and its last history entry."""

    state: HostState
    has_state_file: bool
    last: dict[str, Any] | None = None


@dataclass
class Row:
    """One deployment on the host, as `bgdeploy list` prints it."""

    name: str
    live: str | None = None
    model: str = ""
    image: str = ""
    gpus: str = ""
    memory: str = ""
    router: str = ""  # container | host | "" (none found)
    router_port: int | None = None
    capture: str = ""  # the capture keeper's status ("" when there is none)
    health: str = ""
    last_deploy: str = ""
    containers: dict[str, str] = field(default_factory=dict)  # container name -> status
    network: bool = False
    state: bool = False
    leftovers: list[str] = field(default_factory=list)


def include_port(text: str) -> int | None:
    """The port a host-mode include listens on (its first `listen` directive)."""
    match = _LISTEN_RE.search(text)
    return int(match.group(1)) if match else None


def network_deployment(network: str) -> str | None:
    return network[len(NETWORK_PREFIX) :] if network.startswith(NETWORK_PREFIX) else None


def build(
    containers: list[SeenContainer],
    networks: list[str],
    states: dict[str, SeenState],
    includes: dict[str, int | None],
    health: dict[str, str],
) -> list[Row]:
    """The host's deployments, by name. `includes`: host-mode include files found (name -> listen port);
    `health`: the live colour's container name -> what its health path said."""
    rows: dict[str, Row] = {}

    def row(name: str) -> Row:
        return rows.setdefault(name, Row(name=name))

    for container in containers:
        if container.deployment:
            entry = row(container.deployment)
            entry.containers[container.name] = container.status
            if container.role == "router":
                entry.router = "container"
                entry.router_port = container.published_port
            elif container.role == "capture":
                entry.capture = container.status
    for network in networks:
        name = network_deployment(network)
        if name:
            row(name).network = True
    for name, port in includes.items():
        entry = row(name)
        entry.router = "host"
        entry.router_port = port
    for name, seen in states.items():
        entry = row(name)
        entry.state = True
        live = seen.state.live
        if live is not None:
            entry.live = live.colour
        if seen.last is not None:
            entry.last_deploy = (
                f"{seen.last.get('at', '?')} {seen.last.get('command', '?')} {seen.last.get('outcome', '?')}"
            )
        elif seen.state.since:
            entry.last_deploy = seen.state.since
    by_name = {c.name: c for c in containers}
    for entry in rows.values():
        _describe(entry, by_name, states.get(entry.name), health)
    return [rows[name] for name in sorted(rows)]


def _describe(entry: Row, by_name: dict[str, SeenContainer], seen: SeenState | None, health: dict[str, str]) -> None:
    colours: dict[str, SeenContainer] = {}
    for colour in COLOURS:
        found = by_name.get(f"bgdeploy-{entry.name}-{colour}")
        if found is not None:
            colours[colour] = found
    live = colours.get(entry.live or "")
    if live is None and entry.live is None:
        # No state: the one running colour is the best guess of what serves.
        running = [c for c, info in colours.items() if info.status == "running"]
        if len(running) == 1:
            entry.live = running[0]
            live = colours[running[0]]
    shown = live or next(iter(colours.values()), None)
    if shown is not None:
        entry.model = shown.label("model")
        entry.image = shown.label("image")
        entry.gpus = shown.label("gpus")
        entry.memory = shown.label("gpu-memory-utilization")
    elif seen is not None and seen.state.live is not None:
        release = seen.state.live
        entry.model, entry.image, entry.gpus, entry.memory = release.model, release.image, release.gpus, release.memory
    if live is None:
        entry.health = "nothing runs"
    elif live.status != "running":
        entry.health = f"{entry.live} {live.status}"
    else:
        entry.health = health.get(live.name, "running")
    fix = f"clean it with `bgdeploy remove --name {entry.name} -f SPEC` (any spec for this host)"
    has_containers = bool(entry.containers)
    if not entry.state and has_containers:
        # The state lives in the deploying user's home: a deployment made by another user (or with
        # transport: local as root) shows up here as containers without one.
        entry.leftovers.append(
            f"containers with no state in this user's ~/.bgdeploy ({', '.join(sorted(entry.containers))}; "
            f"deployed by another user?): {fix}"
        )
    if not entry.state and entry.network and not has_containers:
        entry.leftovers.append(f"network {NETWORK_PREFIX}{entry.name} with no state and no container: {fix}")
    elif not entry.state and entry.network:
        entry.leftovers.append(f"network {NETWORK_PREFIX}{entry.name} with no state: {fix}")
    if entry.state and not has_containers:
        if seen is not None and seen.state.live is not None:
            entry.leftovers.append(f"state says {seen.state.live.colour} is live but no container exists: {fix}")
        else:
            entry.leftovers.append(f"a state directory with no container (removed with --keep-state?): {fix}")
    if entry.router == "host" and not has_containers:
        entry.leftovers.append(f"a host nginx include with no container: {fix}")
    if entry.capture and not colours:
        # The keeper only bounds what a router captures: alone, it holds captured requests for nothing.
        entry.leftovers.append(f"a capture keeper (and its captured requests) with no model container: {fix}")


def to_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def render(rows: list[Row], host: str) -> str:
    if not rows:
        return f"{host}: no bgdeploy deployment"
    header = ("NAME", "LIVE", "MODEL", "IMAGE", "GPUS", "MEM", "ROUTER", "HEALTH", "LAST DEPLOY")
    table = [header]
    for r in rows:
        router = f"{r.router}:{r.router_port}" if r.router and r.router_port else (r.router or "-")
        table.append(
            (
                r.name,
                r.live or "-",
                r.model or "-",
                r.image or "-",
                r.gpus or "-",
                r.memory or "-",
                router,
                r.health or "-",
                r.last_deploy or "-",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [f"{host}: {len(rows)} deployment(s)"]
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in table]
    for r in rows:
        if r.capture:
            lines.append(f"capture: {r.name}: keeper bgdeploy-{r.name}-capture {r.capture}")
        lines += [f"leftover: {r.name}: {item}" for item in r.leftovers]
    return "\n".join(lines)
