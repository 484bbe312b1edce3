"""`bgdeploy remove`: take one deployment off a host, without disturbing the others on it.

Order: the removal is written to the host's history first (it survives the state directory); then the
deployment leaves the router (its router container quits gracefully, letting in-flight answers finish;
in host mode its include is removed, `nginx -t` passes or the include is restored and nothing else is
touched, then a reload, so other deployments' includes keep serving); then each colour drains; then
the containers, the network, the router's files and logs and, unless kept, the state directory go.
Removing what is already gone does nothing and succeeds.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bgdeploy.errors import BgdeployError, DeployFailed
from bgdeploy.execute import colours
from bgdeploy.execute.clock import utc_now
from bgdeploy.execute.lock import default_owner
from bgdeploy.execute.session import Session
from bgdeploy.lifecycle.listing import find_include, read_state
from bgdeploy.plan.names import COLOURS, Layout
from bgdeploy.plan.nginx import parse_managed_header
from bgdeploy.plan.result import Result
from bgdeploy.plan.state import HostState, history_line
from bgdeploy.policy.host import check_policy, enforce_policy

ROUTER_CONF = "/etc/bgdeploy/nginx.conf"  # inside the router container
HOST_HISTORY = "history.jsonl"  # in ~/.bgdeploy: the host's own history, which outlives a deployment's state


@dataclass(frozen=True)
class Removal:
    """What `remove` will take away (shown before it asks)."""

    name: str
    containers: tuple[tuple[str, str], ...] = ()  # (container, status)
    include: str | None = None  # the host-mode nginx include
    network: str | None = None
    router_dir: bool = False  # the router's config and access logs
    state_dir: str | None = None
    state_live: bool = False  # the state still records something live
    keep_state: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        state = self.state_dir is not None and (not self.keep_state or self.state_live)
        return not (self.containers or self.include or self.network or self.router_dir or state)

    def lines(self) -> list[str]:
        out = [f"container {name} ({status})" for name, status in self.containers]
        if self.include:
            out.append(f"host nginx include {self.include} (then nginx -t and a reload)")
        if self.network:
            out.append(f"network {self.network}")
        if self.router_dir:
            out.append("the router's config, access logs and captured requests")
        if self.state_dir:
            out.append(
                f"nothing live recorded in {self.state_dir} (its history is kept: --keep-state)"
                if self.keep_state
                else f"state directory {self.state_dir} (state and history)"
            )
        return out


def find(session: Session, *, keep_state: bool) -> Removal:
    """Everything of this deployment on the host (read-only)."""
    layout, engine, host = session.layout, session.engine, session.host
    found: dict[str, str] = {}
    for info in engine.managed_containers():
        if info.label("name") == layout.name:
            found[info.name] = info.status
    # Also by name: a container whose labels were lost still belongs to the deployment.
    names = [layout.container(c) for c in COLOURS] + [layout.set_aside(c) for c in COLOURS]
    for name in [*names, layout.router_container, layout.capture_container]:
        if name not in found:
            unlabelled = engine.inspect(name)
            if unlabelled is not None:
                found[name] = unlabelled.status
    notes: list[str] = []
    include: str | None = None
    own = layout.name == session.loaded.spec.name
    path = session.router.host_include if own else None
    if path is not None:
        raw = host.read_file(path)
        header = parse_managed_header(raw.decode(errors="replace")) if raw else None
        if raw is not None and header is not None and header.get("deployment") == layout.name:
            include = path
        elif raw is not None:
            notes.append(f"{path} was not written by bgdeploy for {layout.name}: left alone")
    if include is None:
        # Another name (--name), or the spec's router mode changed since: the include at its usual paths.
        found_include = find_include(host, layout.name)
        include = found_include[0] if found_include else None
    network = layout.network if layout.network in engine.networks(layout.network) else None
    state_dir = layout.state_dir if host.run(["test", "-d", layout.state_dir], timeout=30).ok else None
    router_dir = state_dir is not None and host.run(["test", "-d", layout.router_dir], timeout=30).ok
    live = state_dir is not None and read_state(host, layout).state.live is not None
    return Removal(
        name=layout.name,
        # Router first: it leaves the traffic path before the colours go.
        containers=tuple(sorted(found.items(), key=lambda item: (not item[0].endswith("-router"), item[0]))),
        include=include,
        network=network,
        router_dir=router_dir,
        state_dir=state_dir,
        state_live=live,
        keep_state=keep_state,
        notes=tuple(notes),
    )


def append_host_history(session: Session, entry: dict[str, object]) -> None:
    """One line in ~/.bgdeploy/history.jsonl, the host's record of removals (bounded like a deployment's)."""
    _append(session, posixpath.join(session.host.home(), ".bgdeploy", HOST_HISTORY), entry)


def _append(session: Session, path: str, entry: dict[str, object]) -> None:
    existing = session.host.read_file(path) or b""
    lines = existing.splitlines(keepends=True)[-499:]
    session.host.write_file(path, b"".join(lines) + history_line(entry))


def run_remove(
    session: Session,
    *,
    keep_state: bool,
    confirm: Callable[[Removal], bool],
    lock_wait: float = 0.0,
    unlock: bool = False,
    name: str | None = None,
) -> Result:
    """Find what to remove, ask `confirm`, then remove it under the deployment's lock.

    `name`: remove that deployment instead of the spec's (a leftover `bgdeploy list` flagged), on the
    spec's host, with the spec's router settings.
    """
    loaded = session.loaded
    if name is not None and name != session.layout.name:
        session.layout = Layout(name, session.layout.home)
        session.result.name = name
        loaded = replace(loaded, spec=loaded.spec.model_copy(update={"name": name}))
    result = session.result
    start = time.monotonic()
    # The host policy gates a removal as it gates a deploy (its `names` bound which deployments a spec may
    # touch): a refusal changes nothing.
    with session.phase("policy"):
        result.policy = check_policy(session.host, loaded, session.environ)
        enforce_policy(result.policy, loaded, session.warn)
    with session.phase("observe"):
        removal = find(session, keep_state=keep_state)
    for note in removal.notes:
        session.warn(note)
    if removal.empty:
        session.out.say(f"remove: nothing of {session.layout.name} is on {session.host.description}; nothing to do")
        result.outcome = "unchanged"
        return result
    if not confirm(removal):
        raise DeployFailed("removal not confirmed; nothing was removed")
    lock = session.take_lock(wait=lock_wait, unlock=unlock)
    entry: dict[str, object] = {"at": utc_now(), "who": default_owner(), "command": "remove", "name": removal.name}
    try:
        removal = find(session, keep_state=keep_state)  # again, now that no deploy can change it
        append_host_history(session, {**entry, "outcome": "started", "removing": removal.lines()})
        remove(session, removal)
        result.outcome = "removed"
    except BgdeployError as exc:
        result.outcome = "failed"
        result.failure = str(exc)
    finally:
        result.duration_s = round(time.monotonic() - start, 3)
        try:
            append_host_history(
                session,
                {**entry, "outcome": result.outcome, "failure": result.failure, "duration_s": result.duration_s},
            )
            if keep_state and result.outcome == "removed":
                _append(
                    session,
                    session.layout.history_file,
                    {**entry, "outcome": "removed", "duration_s": result.duration_s},
                )
        except BgdeployError as exc:
            session.warn(f"could not append to the history: {exc}")
        lock.release()  # a lock that went with the state directory is left alone (its token is not there)
        for warning in lock.warnings:
            session.warn(warning)
    return result


def remove(session: Session, removal: Removal) -> None:
    layout, engine, host = session.layout, session.engine, session.host
    spec = session.loaded.spec
    with session.phase("router"):
        if layout.router_container in dict(removal.containers):
            quit_router(session)
        if removal.include:
            remove_include(session, removal.include)
    with session.phase("drain"):
        for colour in COLOURS:
            info = engine.inspect(layout.container(colour), spec.runtime.port)
            if info is not None and info.running:
                colours.drain(session, colour)
    with session.phase("remove"):
        for name, _ in removal.containers:
            session.out.say(f"remove: container {name}")
            engine.stop(name, timeout=10)
            engine.remove(name)
        if removal.network:
            session.out.say(f"remove: network {removal.network}")
            engine.remove_network(removal.network)
        if removal.router_dir:
            session.out.say("remove: the router's config, access logs and captured requests")
            host.run(["rm", "-rf", layout.router_dir], timeout=60).raise_for_status("removing the router's files")
    with session.phase("state"):
        if removal.state_dir is None:
            return
        if removal.keep_state:
            state = read_state(host, layout).state
            host.write_file(layout.state_file, HostState(name=layout.name, previous=state.live).to_json())
            session.out.say(f"remove: kept {removal.state_dir} (nothing live is recorded now)")
            return
        # A rename first: a deploy waiting for the lock then starts in a fresh directory, never in ours.
        aside = posixpath.join(posixpath.dirname(removal.state_dir), f".removed-{layout.name}-{int(time.time())}")
        host.rename(removal.state_dir, aside)
        host.run(["rm", "-rf", aside], timeout=120).raise_for_status(f"removing {aside}")
        session.out.say(f"remove: state directory {removal.state_dir}")


def quit_router(session: Session) -> None:
    """Stop the router container gracefully: nginx quits once its in-flight requests are answered."""
    engine, name = session.engine, session.layout.router_container
    info = engine.inspect(name)
    if info is None or not info.running:
        return
    engine.no_restart(name)  # else Docker starts it again when nginx exits by itself
    code, output = engine.exec(name, ["nginx", "-s", "quit", "-c", ROUTER_CONF])
    if code != 0:
        session.warn(f"nginx -s quit in {name} failed ({output.strip()}); stopping it instead")
        return
    deadline = session.clock.now() + session.loaded.spec.rollout.drain_timeout + 10
    while True:
        info = engine.inspect(name)
        if info is None or not info.running:
            session.out.say(f"router: {name} quit after answering its in-flight requests")
            return
        if session.clock.now() >= deadline:
            session.warn(f"{name} still had requests in flight after the drain timeout; stopping it anyway")
            return
        session.clock.sleep(0.2)


def _nginx(session: Session, *args: str) -> tuple[int, str]:
    argv = (["sudo", "-n"] if session.loaded.spec.router.sudo else []) + ["nginx", *args]
    done = session.host.run(argv, timeout=60)
    return done.exit_code, (done.stderr + done.stdout).strip()


def remove_include(session: Session, path: str) -> None:
    """Host mode: drop our include, and only then reload, once `nginx -t` accepts what remains."""
    host = session.host
    old = host.read_file(path)
    host.remove(path)
    code, output = _nginx(session, "-t")
    if code != 0:
        if old is not None:
            host.write_file(path, old)
        raise DeployFailed(
            f"nginx -t refused the host's config without {path}, so it was put back and nothing was removed: "
            f"{output}. Fix what nginx names (another file may use this deployment's upstream), then run again"
        )
    code, output = _nginx(session, "-s", "reload")
    if code != 0:
        if old is not None:
            host.write_file(path, old)
        raise DeployFailed(f"nginx -s reload failed, so {path} was put back and nothing was removed: {output}")
    for leftover in (f"{path}.prev", f"{path}.next"):
        host.remove(leftover)
    session.out.say(f"router: removed {path}; nginx reloaded (the host's other sites keep serving)")
