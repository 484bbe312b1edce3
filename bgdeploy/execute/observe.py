"""Read-only view of a deployment on the host: state file, containers and router config, cross-checked.

Nothing is trusted blindly: the state file says what was meant to be live, the router says what is
actually serving, and the containers say what runs. Disagreements become warnings and the router wins,
since it is what clients reach.
"""

from __future__ import annotations

from dataclasses import dataclass

from bgdeploy.execute.session import Session
from bgdeploy.plan.live import decide_live
from bgdeploy.plan.names import COLOURS, Colour
from bgdeploy.plan.nginx import parse_managed_header
from bgdeploy.plan.state import HostState, Release
from bgdeploy.transports.docker_engine import ContainerInfo


@dataclass(frozen=True)
class Observed:
    state: HostState
    containers: dict[Colour, ContainerInfo | None]
    router_container: ContainerInfo | None
    router_weights: dict[Colour, int] | None
    live: Release | None
    warnings: tuple[str, ...]

    def container(self, colour: Colour) -> ContainerInfo | None:
        return self.containers.get(colour)

    def running(self, colour: Colour) -> bool:
        info = self.containers.get(colour)
        return info is not None and info.running


def router_config_path(session: Session) -> str:
    return session.router.config_path


def _weights(header: dict[str, str] | None) -> dict[Colour, int] | None:
    if header is None:
        return None
    weights: dict[Colour, int] = {}
    for part in header.get("weights", "").split(","):
        name, _, weight = part.partition(":")
        for colour in COLOURS:
            if name == colour and weight.isdigit():
                weights[colour] = int(weight)
    return weights or None


def release_of(info: ContainerInfo, colour: Colour) -> Release:
    """The release a container runs, from the labels bgdeploy gave it."""
    return Release(
        colour=colour,
        model=info.label("model"),
        image=info.label("image"),
        spec_hash=info.label("spec-hash"),
        deployed_at=info.label("deployed-at"),
        gpus=info.label("gpus"),
        memory=info.label("gpu-memory-utilization"),
    )


def observe(session: Session) -> Observed:
    layout = session.layout
    state, warnings = HostState.from_json(layout.name, session.host.read_file(layout.state_file))
    engine = session.engine
    port = session.loaded.spec.runtime.port
    containers: dict[Colour, ContainerInfo | None] = {c: engine.inspect(layout.container(c), port) for c in COLOURS}
    router_container = engine.inspect(layout.router_container)  # None where the router is not a container
    raw = session.host.read_file(router_config_path(session))
    weights = _weights(parse_managed_header(raw.decode(errors="replace"))) if raw else None
    if raw and weights is None:
        warnings.append(f"{router_config_path(session)} exists but was not written by bgdeploy; it will be replaced")

    running = {c: release_of(i, c) if i is not None and i.running else None for c, i in containers.items()}
    live, decided = decide_live(state, running, weights)
    warnings += decided
    return Observed(state, containers, router_container, weights, live, tuple(warnings))
