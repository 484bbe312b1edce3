"""The analysis-source interface: a cursor, then each colour's live traffic since that cursor. Pure types.

A provider (the router's access log today; vLLM /metrics or Prometheus next) implements `TrafficSource`.
Callers keep the `Cursor` it hands out and never look inside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Cursor:
    """A moment in a source's stream of traffic. Opaque: only the source that made it reads `position`
    (a byte offset for a log, a timestamp for Prometheus, a counter snapshot key for /metrics)."""

    source: str
    position: object


@dataclass(frozen=True)
class ColourTraffic:
    """What one colour served over a window: counts and latencies as numbers, never as prose.

    `errors` counts the requests that failed as a client sees it: 5xx, no response at all, and the client
    errors rollout.rollback_on.error_statuses names (401, 403, 404, 429 by default); `error_statuses` says
    which, most frequent first, when the source can tell. `p95_latency_s` is None when the colour served
    nothing (or the source cannot tell).
    """

    requests: int
    errors: int
    p95_latency_s: float | None
    error_statuses: tuple[tuple[int, int], ...] = ()  # (HTTP status, count); 0 = no response

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


NO_TRAFFIC = ColourTraffic(0, 0, None)


@dataclass(frozen=True)
class Window:
    """Each colour's traffic between a cursor and now; a colour that served nothing is absent."""

    by_colour: Mapping[str, ColourTraffic]

    def of(self, colour: str) -> ColourTraffic:
        return self.by_colour.get(colour, NO_TRAFFIC)


class TrafficSource(Protocol):
    """Where live traffic figures come from (chosen once per session in `analysis.sources`)."""

    @property
    def description(self) -> str:
        """What the figures are read from, for messages ("the router's access log on gpu-1")."""
        ...

    def mark(self) -> Cursor:
        """Remember now: `since()` of this cursor covers only the traffic that comes after."""
        ...

    def since(self, cursor: Cursor) -> Window:
        """Each colour's traffic from `cursor` to now. Called repeatedly with the same cursor while a bake
        or canary step runs: a source may keep what it already read and only fetch what is new."""
        ...

    def recent(self) -> Cursor:
        """A cursor a little way back (the last few thousand requests or minutes), for `bgdeploy status`."""
        ...
