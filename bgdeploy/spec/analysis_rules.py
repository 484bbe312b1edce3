"""Cross-field rules of `analysis.prometheus`: each query has exactly one limit, names are unique, and the
placeholders it uses exist."""

from __future__ import annotations

import re
from collections.abc import Iterator

from bgdeploy.spec.models import Spec

Finding = tuple[tuple[str | int, ...], str]
PLACEHOLDERS = ("colour", "name", "container")
# `{word}` with nothing else inside: PromQL's own braces always hold a matcher (`{job="x"}`), never a bare word.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")


def analysis_findings(spec: Spec) -> Iterator[Finding]:
    prometheus = spec.analysis.prometheus
    if prometheus is None:
        return
    seen: dict[str, int] = {}
    for i, query in enumerate(prometheus.queries):
        where: tuple[str | int, ...] = ("analysis", "prometheus", "queries", i)
        if (query.max is None) == (query.min is None):
            yield where, "give exactly one of max or min: the limit the new colour's value is held to"
        if query.name in seen:
            yield (*where, "name"), f"the query name {query.name!r} is already used by query #{seen[query.name] + 1}"
        seen.setdefault(query.name, i)
        for word in _PLACEHOLDER.findall(query.query):
            if word not in PLACEHOLDERS:
                known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                yield (*where, "query"), f"unknown placeholder {{{word}}}; known: {known}"
