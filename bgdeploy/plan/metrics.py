"""Prometheus text exposition parsing for vLLM's /metrics, and the few aggregations a deploy verdict needs. Pure.

vLLM names carry colons (`vllm:num_requests_running`). A bad line from a server is skipped, never raised: a
metric we cannot read must not abort a deploy; the caller sees the series as absent instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TIMESTAMP = re.compile(r"-?[0-9]+")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class MetricsParseError(ValueError):
    """One line of a /metrics text is not Prometheus text format (used inside `parse`, which skips such lines)."""


@dataclass(frozen=True)
class Sample:
    """One series value. Labels are (name, value) pairs sorted by name, so equal series compare and hash equal."""

    name: str
    labels: Labels
    value: float

    def label(self, name: str) -> str | None:
        """The value of one label, or None when the series does not carry it."""
        return dict(self.labels).get(name)

    def matches(self, name: str, labels: dict[str, str]) -> bool:
        if self.name != name:
            return False
        own = dict(self.labels)
        return all(own.get(k) == v for k, v in labels.items())


def _parse_labels(text: str, pos: int) -> tuple[Labels, int]:
    """Parse `{a="x",b="y"}` starting at the `{`; return the labels and the index just after `}`."""
    pairs: dict[str, str] = {}
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == "}":
            return tuple(sorted(pairs.items())), pos + 1
        match = _LABEL_NAME.match(text, pos)
        if match is None:
            raise MetricsParseError(f"expected a label name at column {pos + 1}")
        key = match.group()
        pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if text[pos : pos + 2] != '="':
            raise MetricsParseError(f'expected =" after label {key!r}')
        pos += 2
        value: list[str] = []
        while True:
            if pos >= len(text):
                raise MetricsParseError(f"label {key!r} has no closing quote")
            char = text[pos]
            if char == "\\":
                escaped = text[pos + 1 : pos + 2]
                # Prometheus defines three escapes; an unknown one is kept as written rather than dropping the line.
                value.append(_ESCAPES.get(escaped, "\\" + escaped))
                pos += 2
            elif char == '"':
                pos += 1
                break
            else:
                value.append(char)
                pos += 1
        pairs[key] = "".join(value)
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] == "}":
            continue
        else:
            raise MetricsParseError(f"expected , or }} after label {key!r}")


def _parse_value(text: str) -> float:
    # float() also takes "1_000", "infinity" and surrounding spaces, which Prometheus does not; refuse those.
    if "_" in text or not text or text.lower() in ("infinity", "+infinity", "-infinity"):
        raise MetricsParseError(f"{text!r} is not a sample value")
    try:
        return float(text)
    except ValueError as exc:
        raise MetricsParseError(f"{text!r} is not a sample value") from exc


def parse_line(line: str) -> Sample | None:
    """One line: a Sample, None for a blank or comment line; raises MetricsParseError for anything else."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    match = _NAME.match(stripped)
    if match is None:
        raise MetricsParseError("a sample line must start with a metric name")
    name = match.group()
    pos = match.end()
    labels: Labels = ()
    if pos < len(stripped) and stripped[pos] == "{":
        labels, pos = _parse_labels(stripped, pos)
    rest = stripped[pos:]
    if rest[:1] not in (" ", "\t"):
        raise MetricsParseError(f"expected a space and a value after {name!r}")
    # An OpenMetrics exemplar (` # {trace_id="..."} 1.0`) may follow the value; it is not part of the sample.
    fields = rest.split("#", 1)[0].split()
    if not fields or len(fields) > 2:
        raise MetricsParseError(f"expected a value and an optional timestamp after {name!r}")
    value = _parse_value(fields[0])
    if len(fields) == 2 and _TIMESTAMP.fullmatch(fields[1]) is None:
        raise MetricsParseError(f"{fields[1]!r} is not a timestamp in milliseconds")
    return Sample(name, labels, value)


def parse(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition, in order. Malformed lines are skipped, never raised."""
    samples: list[Sample] = []
    for line in text.splitlines():
        try:
            sample = parse_line(line)
        except MetricsParseError:
            continue
        if sample is not None:
            samples.append(sample)
    return samples


def _sum_matching(samples: Iterable[Sample], name: str, labels: dict[str, str]) -> float | None:
    values = [s.value for s in samples if s.matches(name, labels)]
    return math.fsum(values) if values else None


def gauge(samples: Iterable[Sample], name: str, **labels: str) -> float | None:
    """The sum of every series named `name` that carries the given labels; None when there is none."""
    return _sum_matching(samples, name, labels)


def counter(samples: Iterable[Sample], name: str, **labels: str) -> float | None:
    """Like `gauge`. A name without `_total` also finds `<name>_total`, as Prometheus clients expose counters."""
    listed = list(samples)
    found = _sum_matching(listed, name, labels)
    if found is None and not name.endswith("_total"):
        found = _sum_matching(listed, name + "_total", labels)
    return found


@dataclass(frozen=True)
class Histogram:
    """Buckets are (upper bound, cumulative count), sorted, with +Inf last."""

    buckets: list[tuple[float, float]]
    count: float
    sum: float


def histogram(samples: Iterable[Sample], name: str, **labels: str) -> Histogram | None:
    """The histogram `name` summed across every label set except `le` (restricted to `labels` when given).

    None when no bucket is exposed. Without a `_count` series the +Inf bucket is the count; without `_sum` the
    sum is NaN (unknown, not zero).
    """
    by_bound: dict[float, float] = {}
    count: float | None = None
    total: float | None = None
    for sample in samples:
        if sample.name == f"{name}_bucket":
            le = sample.label("le")
            if le is None or not sample.matches(sample.name, labels):
                continue
            try:
                bound = _parse_value(le)
            except MetricsParseError:
                continue
            by_bound[bound] = by_bound.get(bound, 0.0) + sample.value
        elif sample.name == f"{name}_count" and sample.matches(sample.name, labels):
            count = (count or 0.0) + sample.value
        elif sample.name == f"{name}_sum" and sample.matches(sample.name, labels):
            total = (total or 0.0) + sample.value
    if not by_bound:
        return None
    if math.inf not in by_bound and count is not None:
        # Every histogram has a +Inf bucket equal to its count; restore it so quantiles have a total.
        by_bound[math.inf] = count
    buckets = sorted(by_bound.items())
    if count is None:
        count = buckets[-1][1] if buckets[-1][0] == math.inf else 0.0
    return Histogram(buckets=buckets, count=count, sum=math.nan if total is None else total)


def quantile(h: Histogram, q: float) -> float | None:
    """The q-quantile, as Prometheus's histogram_quantile computes it.

    Linear interpolation inside the bucket the rank falls in (from 0 for the first bucket); a rank in the +Inf
    bucket gives the largest finite bound. None when there are no observations, no +Inf bucket, or no finite bucket.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside 0..1; pass 0.5 for the median, 0.95 for p95")
    if len(h.buckets) < 2 or h.buckets[-1][0] != math.inf:
        return None
    # Summing series with different layouts, or a scrape taken mid-update, can break monotonicity: Prometheus
    # fixes that by carrying the running maximum, and so do we.
    bounds: list[float] = []
    cumulative: list[float] = []
    running = 0.0
    for bound, value in h.buckets:
        running = max(running, value)
        bounds.append(bound)
        cumulative.append(running)
    observations = cumulative[-1]
    if not observations > 0:
        return None
    rank = q * observations
    index = next(i for i, c in enumerate(cumulative) if c >= rank)
    if index == len(bounds) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0 if index == 0 else bounds[index - 1]
    below = 0.0 if index == 0 else cumulative[index - 1]
    in_bucket = cumulative[index] - below
    if in_bucket <= 0:
        return start
    return start + (bounds[index] - start) * ((rank - below) / in_bucket)


def delta(newer: Histogram, older: Histogram) -> Histogram:
    """The observations made between two scrapes of the same histogram (`older` first).

    A bucket absent from `older` counts from 0. Should a count have gone down (the server restarted and its
    counters reset), every observation in `newer` happened since the restart, so `newer` is the window; any
    other negative difference is clamped to 0.
    """
    old_counts = dict(older.buckets)
    reset = newer.count < older.count or any(value < old_counts.get(bound, 0.0) for bound, value in newer.buckets)
    if reset:
        return newer
    buckets = [(bound, max(0.0, value - old_counts.get(bound, 0.0))) for bound, value in newer.buckets]
    count = max(0.0, newer.count - older.count)
    window_sum = newer.sum - older.sum
    return Histogram(buckets=buckets, count=count, sum=max(0.0, window_sum) if not math.isnan(window_sum) else math.nan)
