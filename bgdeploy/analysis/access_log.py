"""The first analysis source: the router's JSON access log (nginx `log_format bgdeploy`), read on the host.

A cursor is a byte offset into the log. `since()` keeps what it has read for each cursor and fetches only
the bytes appended since the last look, so a bake of many looks reads the log once.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bgdeploy.analysis.source import ColourTraffic, Cursor, Window
from bgdeploy.plan.verdict import percentile

if TYPE_CHECKING:
    from bgdeploy.transports.base import Host

RECENT_BYTES = 512 * 1024  # `status` judges the last few thousand requests
_FOLLOWED = 16  # cursors followed at once (a canary has one per step); the oldest is forgotten first


@dataclass(frozen=True)
class LiveSample:
    """One request the router served, from its access log."""

    colour: str
    status: int
    latency_s: float
    ts: float


# Client errors that a release causes for every client (rollout.rollback_on.error_statuses by default): 401/403
# an API-key drift, 404 a served-model-name drift, 429 a server that refuses load.
DEFAULT_ERROR_STATUSES: frozenset[int] = frozenset({401, 403, 404, 429})


def is_live_error(status: int, counted: Collection[int] = DEFAULT_ERROR_STATUSES) -> bool:
    """5xx and 0 (no response at all) always fail; of the rest, the statuses in `counted` (a client cannot tell
    an API-key or served-name drift from an outage)."""
    return status == 0 or status >= 500 or status in counted


def traffic_of(
    samples: Sequence[LiveSample], colour: str, counted: Collection[int] = DEFAULT_ERROR_STATUSES
) -> ColourTraffic:
    """One colour's figures over the samples."""
    mine = [s for s in samples if s.colour == colour]
    failed = Counter(s.status for s in mine if is_live_error(s.status, counted))
    by_status = tuple(sorted(failed.items(), key=lambda item: (-item[1], item[0])))
    return ColourTraffic(len(mine), sum(failed.values()), percentile([s.latency_s for s in mine], 95), by_status)


def window_of(samples: Sequence[LiveSample], counted: Collection[int] = DEFAULT_ERROR_STATUSES) -> Window:
    return Window({colour: traffic_of(samples, colour, counted) for colour in sorted({s.colour for s in samples})})


def _seconds_field(value: object) -> float | None:
    """A time from the log: a number, or nginx's "0.010, 0.020" / "0.010 : 0.020" (retries: the last counts)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        parts = [p for p in re.split(r"[,:]", value) if p.strip()]
        if not parts:
            return None
        try:
            number = float(parts[-1].strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _int_field(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_access_log(lines: Iterable[str]) -> list[LiveSample]:
    """Samples from the router's JSON access log; lines that are not bgdeploy's, or served by no colour, are skipped."""
    samples: list[LiveSample] = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        colour = record.get("colour")
        ts = _seconds_field(record.get("ts"))
        status = _int_field(record.get("status"))
        # "-" (or empty) when no upstream answered, e.g. a refused connection: the request time still counts.
        latency = _seconds_field(record.get("upstream_response_time"))
        if latency is None:
            latency = _seconds_field(record.get("request_time"))
        if not isinstance(colour, str) or not colour or ts is None or status is None or latency is None:
            continue
        samples.append(LiveSample(colour=colour, status=status, latency_s=latency, ts=ts))
    return samples


@dataclass
class _Followed:
    """What has been read after one cursor: the offset reached, an unfinished last line, the samples."""

    offset: int
    skip_first_line: bool
    buffer: bytes = b""
    samples: list[LiveSample] = field(default_factory=list)


@dataclass(frozen=True)
class _Position:
    offset: int
    skip_first_line: bool  # a cursor in the middle of the log starts inside a line


class AccessLogSource:
    """`TrafficSource` over the router's access log at `path` on `host`."""

    def __init__(self, host: Host, path: str, error_statuses: Collection[int] = DEFAULT_ERROR_STATUSES) -> None:
        self._host = host
        self._path = path
        self._counted = frozenset(error_statuses)
        self._followed: dict[Cursor, _Followed] = {}

    @property
    def description(self) -> str:
        return f"the router's access log {self._path} on {self._host.description}"

    def _cursor(self, offset: int, skip_first_line: bool) -> Cursor:
        return Cursor("access-log", _Position(offset, skip_first_line))

    def mark(self) -> Cursor:
        return self._cursor(self._host.size(self._path), False)

    def recent(self) -> Cursor:
        size = self._host.size(self._path)
        start = max(0, size - RECENT_BYTES)
        return self._cursor(start, start > 0)

    def since(self, cursor: Cursor) -> Window:
        position = cursor.position
        if cursor.source != "access-log" or not isinstance(position, _Position):
            raise ValueError(f"{cursor!r} was not made by the access-log source")
        followed = self._followed.get(cursor)
        if followed is None:
            while len(self._followed) >= _FOLLOWED:
                del self._followed[next(iter(self._followed))]
            followed = self._followed[cursor] = _Followed(position.offset, position.skip_first_line)
        chunk = self._host.read_from(self._path, followed.offset)
        followed.offset += len(chunk)
        *lines, followed.buffer = (followed.buffer + chunk).split(b"\n")
        if followed.skip_first_line and lines:
            lines = lines[1:]
            followed.skip_first_line = False
        followed.samples += parse_access_log(line.decode(errors="replace") for line in lines)
        return window_of(followed.samples, self._counted)
