"""Live-traffic analysis: where the figures of live requests come from, and how they are judged.

The extension point is `TrafficSource` (`bgdeploy.analysis.source`). A source answers two questions:

- `mark()`: "remember this moment" -> an opaque `Cursor`;
- `since(cursor)`: "what did each colour serve since then?" -> a `Window`, one `ColourTraffic` (requests,
  errors, p95 latency, all numbers) per colour that served anything.

and `recent()` gives a cursor a little way back (for `bgdeploy status`). The bake, the canary steps and
`status` only ever talk to a source; none of them knows that the first source reads nginx's JSON access
log from a byte offset (`bgdeploy.analysis.access_log`).

Judging is separate and pure (`bgdeploy.analysis.verdict`): `judge(traffic, rollback_on, baseline=...)`
returns one `LiveVerdict` whose `outcome` is "passed", "breached" or "inconclusive", with every breach as
numbers (`Breach`). Words are only made in `bgdeploy.report`.

To add a provider (say Prometheus or vLLM's /metrics): write a class with `description`, `mark`, `since`
and `recent` in a module of this package, and pick it in `bgdeploy.analysis.sources.traffic_source`
(the one place that chooses); the spec field that selects it goes in `spec/models.py` and the schema.
"""

from bgdeploy.analysis.source import ColourTraffic, Cursor, TrafficSource, Window
from bgdeploy.analysis.verdict import Breach, LiveOutcome, LiveVerdict, judge

__all__ = [
    "Breach",
    "ColourTraffic",
    "Cursor",
    "LiveOutcome",
    "LiveVerdict",
    "TrafficSource",
    "Window",
    "judge",
]
