"""Capture of live requests and their replay, the pure parts: where the files are, the keeper that bounds
them, how captured lines are read and sampled, and the replay's figures and gates.

What is captured never leaves the host: the keeper and the replay run there, and only aggregates (counts,
rates, latencies, agreement, positions of disagreements) come back. Nothing here ever returns a body.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

CAPTURE_FILE = "capture.jsonl"
ROTATED_FILE = "capture.jsonl.1"
KEEPER_INTERVAL_S = 0.2
# A replayed request never streams, is deterministic, and is capped, so the two colours compare like with like.
REPLAY_OVERRIDES = {"stream": False, "temperature": 0}
# Real requests (messages, content parts, tool schemas) nest a few levels; far deeper ones are not replayed.
MAX_BODY_DEPTH = 64

# POSIX sh + coreutils (both the nginx and vLLM images have them). Runs as root in its container so it can take
# over a file nginx created, and hands every file to the owner of the state directory, mode 0600.
# Bound: the live file is cut when it reaches 3/8 of LIMIT, its last 3/8 becoming the one rotated part (the old
# one deleted first), so the two together stay under 3/4 of LIMIT plus what arrives between two looks
# (KEEPER_INTERVAL_S): LIMIT holds unless a quarter of it arrives within one interval.
KEEPER_SCRIPT = r"""
umask 077
dir=/capture
f="$dir/capture.jsonl"
cut=$((LIMIT * 3 / 8))
owner=$(stat -c %u:%g "$dir")
while :; do
  [ -e "$f" ] || : > "$f"
  chown "$owner" "$f" "$f.1" 2>/dev/null
  chmod 600 "$f" "$f.1" 2>/dev/null
  size=$(stat -c %s "$f" 2>/dev/null || echo 0)
  if [ "$size" -ge "$cut" ]; then
    rm -f "$f.1"
    tail -c "$cut" "$f" > "$f.1"
    truncate -s 0 "$f"
    chown "$owner" "$f.1"
  fi
  sleep "$INTERVAL"
done
"""


def keeper_command(limit: int) -> list[str]:
    """The keeper container's command: the script with its bound (bytes) in the environment of `sh`."""
    return ["sh", "-c", f"LIMIT={int(limit)} INTERVAL={KEEPER_INTERVAL_S} && export LIMIT INTERVAL\n{KEEPER_SCRIPT}"]


def sample_percent(sample: float) -> str:
    """nginx split_clients percent (two decimals at most) of a sampling fraction."""
    text = f"{sample * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def captured_bodies(lines: Iterable[str]) -> list[dict[str, object]]:
    """The JSON request bodies of capture lines, in file order (see iter_captured_bodies)."""
    return list(iter_captured_bodies(lines))


def iter_captured_bodies(lines: Iterable[str]) -> Iterator[dict[str, object]]:
    """The JSON request bodies of capture lines, one at a time, in file order; lines cut by a rotation or too big
    to keep (nginx logs an empty body for a request it did not hold in memory) are skipped."""
    for line in lines:
        try:
            record = json.loads(line)
            body = json.loads(record["body"]) if isinstance(record, dict) else None
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
        # A body nested deeper than any real request (anyone can send `[[[[...`) is skipped: json's encoder
        # recurses too, and one such body would otherwise stop every replay, so every deploy.
        if isinstance(body, dict) and ("messages" in body or "prompt" in body) and not too_deep(body):
            if isinstance(record.get("path"), str):
                body = {**body, "__path": record["path"]}
            yield body


def too_deep(data: object, limit: int = MAX_BODY_DEPTH) -> bool:
    """Whether `data` nests lists and objects deeper than `limit` (walked without recursion)."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        # A tuple, not `dict | list`: this runs on the host's python3 too, which may be older than 3.10.
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def choose(bodies: Iterable[dict[str, object]], count: int, seed: int) -> list[dict[str, object]]:
    """`count` distinct requests picked with `seed` (the same file and seed pick the same requests)."""
    return sample(bodies, count, seed)[1]


def sample(bodies: Iterable[dict[str, object]], count: int, seed: int) -> tuple[int, list[dict[str, object]]]:
    """(distinct requests, `count` of them picked with `seed`, in the order read). `bodies` is read once and only
    the picked ones and a digest of each distinct one are held (reservoir sampling), so the replay's memory on
    the host does not grow with max_bytes (the capture can be gigabytes next to a loaded model)."""
    rng = random.Random(seed)
    seen: set[bytes] = set()
    kept: list[tuple[int, dict[str, object]]] = []
    for body in bodies:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        if len(kept) < count:
            kept.append((len(seen), body))
        else:
            slot = rng.randrange(len(seen))
            if slot < count:
                kept[slot] = (len(seen), body)
    return len(seen), [body for _, body in sorted(kept, key=lambda item: item[0])]


def for_replay(body: dict[str, object], max_tokens: int) -> dict[str, object]:
    """The request as replayed: not streamed, temperature 0, max_tokens capped."""
    out = {k: v for k, v in body.items() if k not in ("__path", "stream_options", "n", "best_of")}
    out.update(REPLAY_OVERRIDES)
    asked = out.get("max_tokens")
    out["max_tokens"] = min(asked, max_tokens) if isinstance(asked, int) and asked > 0 else max_tokens
    out.pop("max_completion_tokens", None)
    return out


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class ColourReplay:
    """One colour's figures over the replayed requests (no content)."""

    requests: int
    errors: int
    latency_p95_s: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class ReplayCheck:
    name: str
    passed: bool
    actual: str


@dataclass(frozen=True)
class ReplayResult:
    """The replay's aggregates: what a report may show."""

    available: int  # distinct captured requests found on the host
    green: ColourReplay
    live: ColourReplay
    compared: int  # requests both colours answered
    agreed: int
    disagreements: tuple[int, ...]  # positions (1-based) in the replayed sample, never content
    checks: tuple[ReplayCheck, ...] = field(default=())
    refused_by_both: int = 0  # replayed requests both colours refused (4xx): not counted for either

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, object]:
        return {
            "available": self.available,
            "green": {**vars(self.green), "error_rate": round(self.green.error_rate, 4)},
            "live": {**vars(self.live), "error_rate": round(self.live.error_rate, 4)},
            "compared": self.compared,
            "agreement": None if self.agreement is None else round(self.agreement, 4),
            "disagreements": list(self.disagreements),
            "checks": [vars(c) for c in self.checks],
            "refused_by_both": self.refused_by_both,
            "passed": self.passed,
        }


def p95(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(0.95 * len(ordered) + 0.999999) - 1))]


def judge(
    result: ReplayResult,
    max_error_rate: float | None,
    max_latency_p95_vs_live: float | None,
    min_agreement: float | None,
) -> ReplayResult:
    """The replay with its gates judged (a gate without a value is not set and not shown)."""
    checks: list[ReplayCheck] = []
    if max_error_rate is not None:
        rate = result.green.error_rate
        checks.append(
            ReplayCheck(
                "max_error_rate",
                rate <= max_error_rate,
                f"{rate:.1%} of {result.green.requests} failed (at most {max_error_rate:.1%})",
            )
        )
    if max_latency_p95_vs_live is not None:
        g, live = result.green.latency_p95_s, result.live.latency_p95_s
        if g is None or live is None or live <= 0:
            checks.append(ReplayCheck("max_latency_p95_vs_live", True, "not judged: no latency on one side"))
        else:
            ratio = g / live
            checks.append(
                ReplayCheck(
                    "max_latency_p95_vs_live",
                    ratio <= max_latency_p95_vs_live,
                    f"p95 {g * 1000:.0f} ms vs live {live * 1000:.0f} ms = {ratio:.2f}x (at most "
                    f"{max_latency_p95_vs_live:g}x)",
                )
            )
    if min_agreement is not None:
        share = result.agreement
        if share is None:
            checks.append(ReplayCheck("min_agreement", False, "no request was answered by both colours"))
        else:
            checks.append(
                ReplayCheck(
                    "min_agreement",
                    share >= min_agreement,
                    f"{share:.1%} of {result.compared} agree (at least {min_agreement:.1%})",
                )
            )
    return ReplayResult(
        result.available,
        result.green,
        result.live,
        result.compared,
        result.agreed,
        result.disagreements,
        tuple(checks),
        result.refused_by_both,
    )


def describe(result: ReplayResult) -> str:
    """One line for the terminal and the report: aggregates only."""
    agreement = "n/a" if result.agreement is None else f"{result.agreement:.1%}"

    def p(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 1000:.0f} ms"

    text = (
        f"{result.green.requests} captured requests replayed: green {result.green.error_rate:.1%} errors, p95 "
        f"{p(result.green.latency_p95_s)}; live {result.live.error_rate:.1%} errors, p95 "
        f"{p(result.live.latency_p95_s)}; agreement {agreement}"
    )
    if result.refused_by_both:
        text += f" ({result.refused_by_both} more refused by both colours (4xx), not counted)"
    if result.disagreements:
        shown = ", ".join(str(n) for n in result.disagreements[:20])
        more = "" if len(result.disagreements) <= 20 else f" and {len(result.disagreements) - 20} more"
        text += f" (requests #{shown}{more} differ)"
    failed = [c for c in result.checks if not c.passed]
    if failed:
        text += "; failed: " + "; ".join(f"{c.name}: {c.actual}" for c in failed)
    return text
