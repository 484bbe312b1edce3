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
