"""Scraping each colour's /metrics directly (through the SSH connection, not the router) while live traffic
is watched: the first scrape opens the window, every later one gives the figures since then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from bgdeploy.analysis.model_metrics import ModelFigures, Snapshot, figures, judge_model, model_breach_text, snapshot
from bgdeploy.analysis.verdict import LiveVerdict
from bgdeploy.execute.analysis_breach import AnalysisBreach
from bgdeploy.execute.session import Session
from bgdeploy.plan.names import Colour
from bgdeploy.plan.result import ModelPoint
from bgdeploy.transports.http import ServerClient

_SCRAPE_TIMEOUT_S = 5.0


@dataclass
class _Colour:
    client: ServerClient
    first: Snapshot | None = None
    latest: Snapshot | None = None
    queue_peak: float | None = None


@dataclass
class ModelWatch:
    """The model metrics of some colours over one window. A colour without /metrics has no figures (None)."""

    session: Session
    colours: dict[str, _Colour] = field(default_factory=dict)

    @classmethod
    def start(cls, session: Session, names: list[str]) -> ModelWatch:
        watch = cls(session)
        spec = session.loaded.spec
        for name in names:
            info = session.engine.inspect(session.layout.container(cast(Colour, name)), spec.runtime.port)
            if info is None or info.host_port is None:
                continue
            local = session.host.reach(info.host_port)
            watch.colours[name] = _Colour(session.client(local, timeout=_SCRAPE_TIMEOUT_S))
        watch.look()
        return watch

    def look(self) -> dict[str, ModelFigures | None]:
        """Scrape every colour once; each colour's figures since the window opened."""
        out: dict[str, ModelFigures | None] = {}
        for name, colour in self.colours.items():
            text = colour.client.metrics(timeout=_SCRAPE_TIMEOUT_S)
            if text is not None:
                shot = snapshot(text)
                colour.first = colour.first or shot
                colour.latest = shot
                if shot.waiting is not None:
                    colour.queue_peak = max(colour.queue_peak or 0.0, shot.waiting)
            out[name] = (
                figures(colour.first, colour.latest, colour.queue_peak)
                if colour.first is not None and colour.latest is not None
                else None
            )
        return out

    def close(self) -> None:
        for colour in self.colours.values():
            colour.client.close()


def judge_models(
    session: Session,
    models: ModelWatch,
    new: str,
    old: str | None,
    elapsed: float,
    traffic: Mapping[str, LiveVerdict | None],
) -> None:
    """Scrape, record a point per colour for the report's chart, and fail on a model-metrics breach."""
    limits = session.loaded.spec.rollout.rollback_on
    found = models.look()
    for colour, figures_now in found.items():
        live = traffic.get(colour)
        session.result.model_series.append(
            ModelPoint(
                t_s=round(elapsed, 3),
                colour=colour,
                requests=figures_now.requests if figures_now else 0,
                ttft_p95_s=figures_now.ttft_p95_s if figures_now else None,
                itl_p95_s=figures_now.itl_p95_s if figures_now else None,
                queue_peak=figures_now.queue_peak if figures_now else None,
                kv_cache=figures_now.kv_cache if figures_now else None,
                error_rate=live.error_rate if live is not None else None,
            )
        )
    mine = found.get(new)
    if mine is None:
        return
    breaches = judge_model(mine, found.get(old) if old else None, limits, limits.min_requests)
    if breaches:
        raise AnalysisBreach(
            f"the model metrics of {new} breached rollout.rollback_on after {elapsed:.0f}s: "
            + "; ".join(model_breach_text(b) for b in breaches)
        )
