"""validation.replay and its gates, checked where they are written: capture sizes the keeper and nginx can
hold, and gates that have something to judge."""

from __future__ import annotations

from collections.abc import Iterator

from bgdeploy.spec.models import Spec, size_bytes

Finding = tuple[tuple[str | int, ...], str]

MIN_CAPTURE_BYTES = 64 * 1024
MIN_BODY_BYTES = 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


def replay_findings(spec: Spec) -> Iterator[Finding]:
    replay = spec.validation.replay
    gates = spec.validation.thresholds.replay
    gated = [k for k in ("max_error_rate", "max_latency_p95_vs_live", "min_agreement") if getattr(gates, k) is not None]
    if (replay is None or replay.capture is None) and gated:
        yield (
            ("validation", "thresholds", "replay"),
            "replay gates need captured traffic to replay; add validation.replay.capture (e.g. {sample: 0.02}) or "
            "remove validation.thresholds.replay",
        )
    if replay is None:
        return
    if replay.capture is None:
        yield (
            ("validation", "replay"),
            "validation.replay replays captured traffic; add capture: {sample: 0.02, max_bytes: 64m} or remove replay",
        )
        return
    yield from _path_findings(replay.capture.paths, spec.health.path)
    limit, body = size_bytes(replay.capture.max_bytes), size_bytes(replay.capture.max_body)
    if limit < MIN_CAPTURE_BYTES:
        yield (("validation", "replay", "capture", "max_bytes"), "max_bytes must be at least 64k")
    if not MIN_BODY_BYTES <= body <= MAX_BODY_BYTES:
        yield (("validation", "replay", "capture", "max_body"), "max_body must be between 1k and 64m")
    elif limit >= MIN_CAPTURE_BYTES and body * 4 > limit:
        yield (
            ("validation", "replay", "capture", "max_body"),
            f"max_body {replay.capture.max_body} is more than a quarter of max_bytes {replay.capture.max_bytes}: "
            "raise max_bytes or lower max_body",
        )


def _path_findings(paths: list[str], health_path: str) -> Iterator[Finding]:
    """Each captured path becomes its own `location = PATH` in nginx: a path given twice, or also the health
    path, is a duplicate location nginx refuses at the switch; a `.`/`..` segment or `//` never matches (nginx
    normalises request paths), so nothing would be captured."""
    health = health_path.partition("?")[0]
    seen: set[str] = set()
    for i, path in enumerate(paths):
        where: tuple[str | int, ...] = ("validation", "replay", "capture", "paths", i)
        if path in seen:
            yield (where, f"{path} is listed twice; list each path once")
        elif path == health:
            yield (where, f"{path} is also health.path, which the router serves apart; capture another path")
        elif "//" in path or any(part in (".", "..") for part in path.split("/")):
            yield (
                where,
                f"{path} has a `.` or `..` segment or `//`, which no request path has once nginx normalises it; "
                "write the path as clients send it, e.g. /v1/chat/completions",
            )
        seen.add(path)
