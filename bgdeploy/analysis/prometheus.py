"""PromQL queries as an analysis provider: placeholders, limits and `for`, judged per look. Pure.

A limit counts only once it has been broken at every look for `for` seconds (0: at once), as a Prometheus
alerting rule's `for` does; a look without data neither breaks nor keeps a breach going.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bgdeploy.spec.models import PrometheusQuery


def render_query(query: str, *, colour: str, name: str, container: str) -> str:
    """Replace exactly {colour}, {name} and {container}; PromQL's own braces are left alone."""
    return query.replace("{colour}", colour).replace("{name}", name).replace("{container}", container)


@dataclass(frozen=True)
class QueryLook:
    """One query at one look: the new colour's value (and the old's, for the report)."""

    query: str  # the query's name
    t_s: float
    new: float | None
    old: float | None
    breaking: bool
    breached: bool
    limit: str
    error: str | None = None


@dataclass
class QueryState:
    """Since when a query's limit has been broken without a break (None: it holds)."""

    since: dict[str, float] = field(default_factory=dict)

    def judge(
        self, query: PrometheusQuery, t_s: float, new: float | None, old: float | None, error: str | None
    ) -> QueryLook:
        limit = f"≤ {query.max:g}" if query.max is not None else f"≥ {query.min:g}"
        breaking = new is not None and (
            (query.max is not None and new > query.max) or (query.min is not None and new < query.min)
        )
        if new is None:
            pass  # no data: neither a breach nor the end of one
        elif breaking:
            self.since.setdefault(query.name, t_s)
        else:
            self.since.pop(query.name, None)
        started = self.since.get(query.name)
        breached = breaking and started is not None and t_s - started >= query.for_
        return QueryLook(query.name, t_s, new, old, breaking, breached, limit, error)


def look_text(look: QueryLook, for_s: float) -> str:
    held = f" for {for_s:g}s" if for_s else ""
    return f"Prometheus query {look.query}: {look.new:g} (limit {look.limit}{held})"
