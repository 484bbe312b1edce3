"""Durations as written in bluegreen.yaml: `500ms`, `30s`, `15m`, `1h`, or a plain number of seconds."""

from __future__ import annotations

import math
import re

DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RE = re.compile(DURATION_PATTERN)

DURATION_HINT = "a duration like 500ms, 30s, 15m, 1h, or a number of seconds"


def parse_duration(value: object) -> float:
    """Return the duration in seconds; raise ValueError with a hint when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HINT}, got a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _RE.match(value.strip())
        if match is None:
            raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
        number = value.strip()[: match.start(2)]
        seconds = float(number) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"expected {DURATION_HINT}, got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected {DURATION_HINT} that is zero or more, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form used in summaries and reports: 0.5s, 30s, 15m, 1h30m."""
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)
