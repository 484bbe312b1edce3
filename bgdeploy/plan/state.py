"""The host's record of a deployment (state.json) and its history (history.jsonl). Pure data + JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bgdeploy.plan.names import COLOURS, Colour
from bgdeploy.untrusted.secrets import mask_json

STATE_VERSION = 1
MAX_STATE_BYTES = 1024 * 1024  # state.json is a few hundred bytes; anything near this is not ours
MAX_DEPTH = 8  # state.json nests three levels deep (canary.release.*)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _settings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def _depth(value: Any, limit: int) -> int:
    """How deep `value` nests, looking no deeper than `limit` + 1 (iterative: no recursion to exhaust)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > limit:
            return depth
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def load_json(raw: bytes) -> Any:
    """Strict JSON of a file bgdeploy wrote: no NaN or Infinity, bounded size and nesting; ValueError says why."""
    if len(raw) > MAX_STATE_BYTES:
        raise ValueError(f"{len(raw)} bytes, more than bgdeploy ever writes ({MAX_STATE_BYTES})")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason})") from None
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return data


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
            step, weight = data["step"], data["weight"]
            if not _is_int(step) or not _is_int(weight):
                return None
            return cls(
                new=new,
                old=old,
                step=step,
                weight=weight,
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
    # The live deploy's other settings (spec/release.py: dotted key -> short hash), so a plan names what changed.
    settings: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = {"version": STATE_VERSION, **asdict(self)}
        return mask_json(json.dumps(body, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, name: str, raw: bytes | None) -> tuple[HostState, list[str]]:
        """The state, and warnings when the file is missing parts or unreadable (never an exception)."""
        if raw is None:
            return cls(name=name), []
        try:
            data = load_json(raw)
        except ValueError as exc:
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
                weights={str(k): v for k, v in (weights or {}).items() if _is_int(v)},
                canary=CanaryState.from_json(data.get("canary")),
                settings=_settings(data.get("settings")),
            ),
            [],
        )

    def with_settings(self, settings: dict[str, str]) -> HostState:
        return replace(self, settings=dict(settings))

    def with_live(self, live: Release, since: str) -> HostState:
        previous = self.live if self.live is not None and self.live.colour != live.colour else self.previous
        return replace(self, live=live, previous=previous, since=since, weights={live.colour: 100}, canary=None)

    def with_canary(self, canary: CanaryState | None) -> HostState:
        weights = {str(canary.old): 100 - canary.weight, str(canary.new): canary.weight} if canary else self.weights
        return replace(self, canary=canary, weights=weights)


def state_problems(raw: bytes | None) -> list[str]:
    """What is wrong with state.json as bgdeploy writes it (empty: nothing). Strict, where `from_json` is lenient:
    a command that changes the host refuses to guess from a damaged record (it may hide a canary in progress)."""
    if raw is None:
        return []
    try:
        data = load_json(raw)
    except ValueError as exc:
        return [f"not valid JSON: {exc}"]
    if not isinstance(data, dict):
        return [f"not a JSON object but {type(data).__name__}"]
    problems: list[str] = []
    for key in ("live", "previous"):
        if data.get(key) is not None and Release.from_json(data[key]) is None:
            problems.append(f"{key}: not a release (colour blue or green, model, image, spec_hash)")
    if data.get("canary") is not None and CanaryState.from_json(data["canary"]) is None:
        problems.append("canary: not a canary record (new, old, step, weight, release)")
    weights = data.get("weights", {})
    if not isinstance(weights, dict) or any(
        k not in COLOURS or not _is_int(v) or not 0 <= v <= 100 for k, v in weights.items()
    ):
        problems.append("weights: not a map of blue/green to a percentage")
    settings = data.get("settings", {})
    if not isinstance(settings, dict) or not all(isinstance(v, str) for v in settings.values()):
        problems.append("settings: not a map of setting to hash")
    if not isinstance(data.get("since", ""), str):
        problems.append("since: not a string")
    for key in ("live", "previous"):
        value = data.get(key)
        if isinstance(value, dict) and any(
            not isinstance(value.get(f), str) for f in ("model", "image", "spec_hash") if f in value
        ):
            problems.append(f"{key}: model, image and spec_hash must be strings")
    return problems


def damaged_message(path: str, problems: list[str]) -> str:
    """What a user reads about a damaged state.json: what is wrong and how to repair it."""
    return (
        f"{path} is damaged ({'; '.join(problems)}). Fix it by hand if you know what it should say, or move it "
        f"aside (`mv {path} {path}.damaged`): the next command rebuilds it from the containers' labels and the "
        "router (a canary in progress is then forgotten: `bgdeploy status` shows the weights)"
    )


def history_line(entry: dict[str, Any]) -> bytes:
    """One line of history.jsonl; secrets masked (a failure message may quote a container's log)."""
    return mask_json(json.dumps(entry, sort_keys=True) + "\n").encode()


def parse_history(raw: bytes | None, limit: int = 10) -> list[dict[str, Any]]:
    """The last `limit` entries of history.jsonl, newest last; bad lines are skipped."""
    if not raw:
        return []
    entries: list[dict[str, Any]] = []
    for line in reversed(raw.decode(errors="replace").splitlines()):
        try:
            item = load_json(line.encode())
        except ValueError:
            continue
        if isinstance(item, dict):
            entries.append(item)
            if len(entries) == limit:
                break
    return entries[::-1]
