"""Durations as written in bluegreen.yaml: `500ms`, `30s`, `15m`, `1h`, `1h30m`, or a plain number of seconds.

Every duration bgdeploy prints (`format_duration`) reads back with `parse_duration`.
"""

from __future__ import annotations

import math
import re

# One or more parts, each a number and a unit, largest unit first: 30s, 1h30m, 2m0.5s (as Go and kubectl write them).
DURATION_PATTERN = (
    r"^(?=[0-9])([0-9]+(\.[0-9]+)?h)?([0-9]+(\.[0-9]+)?m(?!s))?([0-9]+(\.[0-9]+)?s)?([0-9]+(\.[0-9]+)?ms)?$"
)
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_RE = re.compile(DURATION_PATTERN)
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")

DURATION_HINT = "a duration like 500ms, 30s, 15m, 1h, or a number of seconds"


def parse_duration(value: object) -> float:
    """Return the duration in seconds; raise ValueError with a hint when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HINT}, got a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or _RE.match(text) is None:
            raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
        seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
    else:
        raise ValueError(f"expected {DURATION_HINT}, got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected {DURATION_HINT} that is zero or more, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form used in summaries and reports: 0.5s, 30s, 15m, 1h30m (parse_duration reads it back;
    from a minute on, to the second)."""
    if round(seconds, 3) < 60:
        text = f"{seconds:.3f}".rstrip("0").rstrip(".")  # never an exponent: 1e-05s would not read back
        return f"{text}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)
