"""The host's record of a deployment (state.json) and its history (history.jsonl). Pure data + JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bgdeploy.plan.names import COLOURS, Colour

STATE_VERSION = 1


@dataclass(frozen=True)
class Release:
    """What one colour runs."""

    colour: Colour
    model: str
    image: str
    spec_hash: str
    deployed_at: str
    gpus: str = ""  # "0,1", or "none"
    memory: str = ""  # gpu_memory_utilization, as given to the server

    @classmethod
    def from_json(cls, data: Any) -> Release | None:
        if not isinstance(data, dict) or data.get("colour") not in COLOURS:
            return None
        try:
            return cls(
                colour=data["colour"],
                model=str(data["model"]),
                image=str(data["image"]),
                spec_hash=str(data["spec_hash"]),
                deployed_at=str(data.get("deployed_at", "")),
                gpus=str(data.get("gpus", "")),
                memory=str(data.get("memory", "")),
            )
        except KeyError:
            return None


@dataclass(frozen=True)
class CanaryState:
    """A canary in progress: recorded at every step, so a later process can promote, abort or recover it."""

    new: Colour
    old: Colour
    step: int  # index of the last step applied (0-based)
    weight: int  # percent of traffic to `new` now
    release: Release
    paused: str = ""  # why it waits for `bgdeploy promote` (empty: a process is driving it)
    aside: bool = False  # the previous release of `new` waits under its set-aside name
    aside_was_running: bool = False

    @classmethod
    def from_json(cls, data: Any) -> CanaryState | None:
        if not isinstance(data, dict):
            return None
        release = Release.from_json(data.get("release"))
        new, old = data.get("new"), data.get("old")
        if release is None or new not in COLOURS or old not in COLOURS or new == old:
            return None
        try:
            return cls(
                new=new,
                old=old,
                step=int(data["step"]),
                weight=int(data["weight"]),
                release=release,
                paused=str(data.get("paused", "")),
                aside=bool(data.get("aside", False)),
                aside_was_running=bool(data.get("aside_was_running", False)),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class HostState:
    """state.json: the live release, the one kept for rollback, and an in-progress canary (if any)."""

    name: str
    live: Release | None = None
    previous: Release | None = None
    since: str = ""
    weights: dict[str, int] = field(default_factory=dict)
    canary: CanaryState | None = None

    def to_json(self) -> bytes:
        body = {"version": STATE_VERSION, **asdict(self)}
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, name: str, raw: bytes | None) -> tuple[HostState, list[str]]:
        """The state, and warnings when the file is missing parts or unreadable (never an exception)."""
        if raw is None:
            return cls(name=name), []
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return cls(name=name), [f"state.json is not valid JSON ({exc}); rebuilding it from the containers"]
        if not isinstance(data, dict):
            return cls(name=name), ["state.json is not a JSON object; rebuilding it from the containers"]
        weights = data.get("weights") if isinstance(data.get("weights"), dict) else {}
        return (
            cls(
                name=name,
                live=Release.from_json(data.get("live")),
                previous=Release.from_json(data.get("previous")),
                since=str(data.get("since", "")),
                weights={str(k): int(v) for k, v in (weights or {}).items() if isinstance(v, int)},
                canary=CanaryState.from_json(data.get("canary")),
            ),
            [],
        )

    def with_live(self, live: Release, since: str) -> HostState:
        previous = self.live if self.live is not None and self.live.colour != live.colour else self.previous
        return replace(self, live=live, previous=previous, since=since, weights={live.colour: 100}, canary=None)

    def with_canary(self, canary: CanaryState | None) -> HostState:
        weights = {str(canary.old): 100 - canary.weight, str(canary.new): canary.weight} if canary else self.weights
        return replace(self, canary=canary, weights=weights)


def history_line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, sort_keys=True) + "\n").encode()


def parse_history(raw: bytes | None, limit: int = 10) -> list[dict[str, Any]]:
    """The last `limit` entries of history.jsonl, newest last; bad lines are skipped."""
    if not raw:
        return []
    entries: list[dict[str, Any]] = []
    for line in reversed(raw.decode(errors="replace").splitlines()):
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            entries.append(item)
            if len(entries) == limit:
                break
    return entries[::-1]
