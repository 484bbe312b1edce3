"""`bgdeploy status`: what is live, each colour's health, the router, and the last deploys. Read-only."""

from __future__ import annotations

from typing import Any

from bgdeploy.analysis.verdict import judge
from bgdeploy.capture import keeper
from bgdeploy.execute.observe import observe
from bgdeploy.execute.session import Session
from bgdeploy.plan.names import COLOURS
from bgdeploy.plan.state import damaged_message, parse_history, state_problems
from bgdeploy.routers.reconcile import judge as judge_router


def status(session: Session) -> dict[str, Any]:
    spec = session.loaded.spec
    observed = observe(session)
    colours: dict[str, Any] = {}
    for colour in COLOURS:
        info = observed.container(colour)
        entry: dict[str, Any] = {"container": "absent"}
        if info is not None:
            entry = {
                "container": info.status,
                "model": info.label("model"),
                "image": info.label("image"),
                "spec_hash": info.label("spec-hash"),
                "deployed_at": info.label("deployed-at"),
                "health": "not running",
            }
            if info.running and info.host_port is not None:
                with session.client(session.host.reach(info.host_port), timeout=5) as client:
                    probe = client.probe(spec.health.path, timeout=spec.health.timeout)
                entry["health"] = "healthy" if probe.state == "ready" else f"{probe.state} ({probe.detail})"
        colours[colour] = entry
    live = observed.live
    canary = observed.state.canary
    traffic: dict[str, Any] = {}
    if canary is not None or (observed.router_weights and len(observed.router_weights) > 1):
        traffic = _recent_traffic(session)
    return {
        "canary": None
        if canary is None
        else {
            "new": canary.new,
            "old": canary.old,
            "step": canary.step + 1,
            "steps": len(spec.rollout.steps),
            "weight": canary.weight,
            "paused": canary.paused,
            "model": canary.release.model,
        },
        "traffic": traffic,
        "name": spec.name,
        "host": session.host.description,
        "live": None if live is None else live.__dict__,
        "since": observed.state.since,
        "previous": None if observed.state.previous is None else observed.state.previous.__dict__,
        "router": {
            "mode": session.router.kind,
            # What nginx serves, judged against the guarantee (plan/routing.py); non-empty: `status` exits 1.
            "problems": list(judge_router(session, observed.state).problems),
            "weights": observed.router_weights or {},
            "container": None if observed.router_container is None else observed.router_container.status,
        },
        "colours": colours,
        # Sizes and counts only: no captured content crosses the connection.
        "capture": keeper.status(session).to_json() if keeper.capture_settings(session) is not None else None,
        "history": parse_history(session.host.read_file(session.layout.history_file), limit=5),
        "warnings": list(observed.warnings) + _state_damage(session),
    }


def _state_damage(session: Session) -> list[str]:
    """A damaged state.json does not stop `status` (it shows what runs); it is named, with the repair."""
    path = session.layout.state_file
    problems = state_problems(session.host.read_file(path))
    return [damaged_message(path, problems)] if problems else []


def _recent_traffic(session: Session) -> dict[str, Any]:
    """Each colour's figures over the recent traffic the analysis source still holds."""
    window = session.traffic.since(session.traffic.recent())
    limits = session.loaded.spec.rollout.rollback_on
    out: dict[str, Any] = {}
    for colour in COLOURS:
        verdict = judge(window.of(colour), limits, min_requests=limits.min_requests)
        if verdict.requests:
            out[colour] = {
                "requests": verdict.requests,
                "errors": verdict.errors,
                "error_rate": verdict.error_rate,
                "p95_latency_s": verdict.p95_latency_s,
                "error_statuses": {str(status): count for status, count in verdict.error_statuses},
                "outcome": verdict.outcome,
            }
    return out
