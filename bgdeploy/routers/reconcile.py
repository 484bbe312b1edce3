"""Reconcile first: observe what nginx really serves, judge it against the containers and state.json
(`plan.routing.judge_router`), and repair a router that points at a dead, wrong or stale colour before a
command does anything else. `status` calls it without repairing, to report."""

from __future__ import annotations

from collections.abc import Mapping

from bgdeploy.errors import BgdeployError, TransportError
from bgdeploy.execute.observe import _weights
from bgdeploy.execute.router import apply_weights, colour_infos
from bgdeploy.execute.session import Session
from bgdeploy.plan.names import COLOURS, Colour
from bgdeploy.plan.nginx import managed_config_id, parse_managed_header
from bgdeploy.plan.routing import (
    ColourFacts,
    ProbeTally,
    RouterFacts,
    RouterJudgement,
    judge_router,
    upstream_addresses,
)
from bgdeploy.plan.state import HostState
from bgdeploy.transports.docker_engine import ContainerInfo

PROBES = 4  # a split config answers with either colour; all answers must name the same config
HEALTH_TRIES = 3


def _probe_router(session: Session) -> ProbeTally:
    tally = ProbeTally()
    try:
        port = session.router.probe_port()
        with session.client(port, timeout=5) as client:
            for _ in range(PROBES):
                probe = client.probe(session.loaded.spec.health.path, timeout=5)
                if probe.state == "loading":  # refused or reset: nothing listens
                    continue
                tally.add(probe.headers, ready=probe.state == "ready")
    except TransportError:
        pass
    return tally


def _healthy(session: Session, host_port: int) -> bool:
    """One missed probe is not a dead colour (a busy server can miss one): a judgement that moves traffic off
    the live release (to the previous one) must not rest on it, so a few tries, a second apart."""
    spec = session.loaded.spec
    for attempt in range(HEALTH_TRIES):
        if attempt:
            session.clock.sleep(1.0)
        try:
            with session.client(session.host.reach(host_port), timeout=5) as client:
                if client.probe(spec.health.path, timeout=spec.health.timeout).state == "ready":
                    return True
        except TransportError:
            pass
    return False


def serves(session: Session, info: ContainerInfo | None) -> bool:
    """Whether a colour runs and answers its health check now (a few tries): fit to be routed to."""
    return info is not None and info.running and info.host_port is not None and _healthy(session, info.host_port)


def _colour_facts(session: Session, infos: Mapping[Colour, ContainerInfo | None]) -> dict[Colour, ColourFacts]:
    facts: dict[Colour, ColourFacts] = {}
    for colour in COLOURS:
        info = infos.get(colour)
        if info is None or not info.running:
            facts[colour] = ColourFacts(running=False, healthy=False, address=None)
            continue
        healthy = info.host_port is not None and _healthy(session, info.host_port)
        facts[colour] = ColourFacts(running=True, healthy=healthy, address=session.router.address(colour, info))
    return facts


def judge(session: Session, state: HostState) -> RouterJudgement:
    """Judge the router as it is now (read-only)."""
    router = session.router
    infos = colour_infos(session)
    raw = session.host.read_file(router.config_path)
    text = raw.decode(errors="replace") if raw else ""
    header = parse_managed_header(text) if text else None
    tally = _probe_router(session)
    facts = RouterFacts(
        file_weights=_weights(header),
        file_id=managed_config_id(text) if header else None,
        file_addresses=upstream_addresses(text),
        answered=tally.answered > 0,
        loaded_id=tally.loaded_id(),
        deployment=tally.deployment(session.loaded.spec.name),
        current=router.running(),
        failing=tally.failing,
    )

    def render_id(weights: Mapping[Colour, int]) -> str | None:
        try:
            return managed_config_id(router.render(weights, infos))
        except BgdeployError:
            return None

    return judge_router(
        session.loaded.spec.name,
        facts,
        _colour_facts(session, infos),
        live=state.live.colour if state.live else None,
        previous=state.previous.colour if state.previous else None,
        render_id=render_id if router.running() else None,
    )


def reconcile(session: Session, state: HostState, *, repair: bool = True) -> RouterJudgement:
    """Judge the router and, when it breaks the guarantee and `repair`, route to what runs healthy now."""
    judgement = judge(session, state)
    if judgement.ok:
        return judgement
    for problem in judgement.problems:
        session.warn(f"router: {problem}")
    if judgement.stranded:
        session.warn("router: no colour runs healthy, so there is nothing to route to; deploy or roll back")
    if repair and judgement.repair is not None:
        target = judgement.repair
        only = next(iter(target)) if len(target) == 1 else None
        shares = ", ".join(f"{c} {w}%" for c, w in target.items())
        session.out.say(f"reconcile: repairing the router first: {shares}")
        with session.phase("reconcile"):
            apply_weights(session, target, confirm=only)
    return judgement
