"""`bgdeploy list`: every bgdeploy deployment on a host, read from the host (read-only)."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from bgdeploy.errors import BgdeployError, UsageError
from bgdeploy.lifecycle import history
from bgdeploy.lifecycle.inventory import NETWORK_PREFIX, Row, SeenContainer, SeenState, build, include_port
from bgdeploy.plan.names import Layout
from bgdeploy.plan.nginx import parse_managed_header
from bgdeploy.plan.state import HostState, parse_history
from bgdeploy.spec.address import Address, parse_address
from bgdeploy.spec.models import Jump, Target
from bgdeploy.transports.base import Host
from bgdeploy.transports.connect import open_host
from bgdeploy.transports.docker_engine import DockerEngine
from bgdeploy.transports.http import ServerClient

HEALTH_PATH = "/health"  # vLLM's; a custom server whose health path differs shows as "running"
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
# Where a host-mode include is found without the spec: the default path, and the directory the README
# suggests for a non-root deploy user.
INCLUDE_DIRS = ("/etc/nginx/conf.d", "/etc/nginx/bgdeploy.d")


def state_names(host: Host, root: str) -> list[str]:
    """The deployment names with a state directory under ~/.bgdeploy (dot-names are removals in progress)."""
    done = host.run(["ls", "-1p", root], timeout=30)
    if not done.ok:
        return []  # no ~/.bgdeploy at all: nothing was ever deployed here
    return sorted(line[:-1] for line in done.stdout.splitlines() if line.endswith("/") and _NAME.match(line[:-1]))


def read_state(host: Host, layout: Layout) -> SeenState:
    raw = host.read_file(layout.state_file)
    state, _ = HostState.from_json(layout.name, raw)
    last = parse_history(host.read_file(layout.history_file), limit=1)
    return SeenState(state, raw is not None, last[-1] if last else None)


def find_include(host: Host, name: str) -> tuple[str, bytes] | None:
    """A host-mode include bgdeploy wrote for `name` at one of the usual paths."""
    for directory in INCLUDE_DIRS:
        path = f"{directory}/bgdeploy-{name}.conf"
        try:
            raw = host.read_file(path)
        except BgdeployError:
            continue  # unreadable for this user: not ours to report
        header = parse_managed_header(raw.decode(errors="replace")) if raw else None
        if raw is not None and header is not None and header.get("deployment") == name:
            return path, raw
    return None


def gather(host: Host, engine: DockerEngine) -> list[Row]:
    home = host.home()
    containers = [
        SeenContainer(info.name, info.status, info.labels, info.host_port) for info in engine.managed_containers()
    ]
    networks = list(engine.networks(NETWORK_PREFIX))
    states = {
        name: read_state(host, Layout(name, home)) for name in state_names(host, posixpath.join(home, ".bgdeploy"))
    }
    names = {c.deployment for c in containers if c.deployment} | set(states)
    names |= {n[len(NETWORK_PREFIX) :] for n in networks}
    includes: dict[str, int | None] = {}
    for name in sorted(names):
        found = find_include(host, name)
        if found is not None:
            includes[name] = include_port(found[1].decode(errors="replace"))
    health: dict[str, str] = {}
    for container in containers:
        if container.role in ("blue", "green") and container.status == "running" and container.published_port:
            health[container.name] = probe(host, container.published_port)
    return build(containers, networks, states, includes, health)


def probe(host: Host, port: int) -> str:
    try:
        with ServerClient(f"http://127.0.0.1:{host.reach(port)}", timeout=5) as client:
            answer = client.probe(HEALTH_PATH, timeout=5)
    except BgdeployError as exc:
        return f"unreachable ({exc})"
    return "healthy" if answer.state == "ready" else f"{answer.state} ({answer.detail})"


def jump_from_args(jump: str | None, host_key: str | None) -> Jump | None:
    """--jump [USER@]HOST[:PORT] with --jump-host-key, as target.jump (its user defaults to the target's)."""
    if jump is None:
        if host_key:
            raise UsageError("--jump-host-key is the key of the --jump host: give --jump [USER@]HOST[:PORT] too")
        return None
    if not host_key:
        raise UsageError(
            "--jump needs the jump host's own key pinned: add --jump-host-key 'ssh-ed25519 AAAA...' "
            "(`ssh-keyscan -t ed25519 JUMPHOST`, checked out of band)"
        )
    address = parse_address(jump)
    return Jump(host=address.host, port=address.port, user=address.user, host_key=host_key)


def open_address(address: Address, *, host_key: str | None, known_hosts: str | None, jump: Jump | None = None) -> Host:
    """Connect to a host named on the command line, its key pinned by --host-key, --known-hosts,
    BGDEPLOY_KNOWN_HOSTS or, failing those, the user's own ~/.ssh/known_hosts (read, never written);
    `jump`: through that bastion (--jump), as target.jump does."""
    if not host_key and not known_hosts:
        own = Path.home() / ".ssh" / "known_hosts"
        known_hosts = str(own) if own.is_file() else None
    target = Target(
        host=address.host,
        port=address.port,
        user=address.user or "root",
        host_key=host_key,
        known_hosts=str(Path(known_hosts).resolve()) if known_hosts else None,
        jump=jump,
    )
    return open_host(target, Path.cwd())


def read_history(host: Host, layout: Layout, limit: int) -> list[dict[str, object]]:
    """The deployment's history merged with the host's record of its removals, newest last."""
    own = parse_history(host.read_file(layout.history_file), limit=max(limit, 1))
    removals = parse_history(host.read_file(posixpath.join(layout.home, ".bgdeploy", "history.jsonl")), limit=500)
    return history.merge(own, removals, layout.name, limit)
