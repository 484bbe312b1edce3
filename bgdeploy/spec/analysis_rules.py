"""Cross-field rules of `analysis.prometheus`: each query has exactly one limit, names are unique, and the
placeholders it uses exist."""

from __future__ import annotations

import re
from collections.abc import Iterator

from bgdeploy.spec.models import Spec
from bgdeploy.untrusted.secrets import SECRET_VARIABLES

Finding = tuple[tuple[str | int, ...], str]
PLACEHOLDERS = ("colour", "name", "container")
# `{word}` with nothing else inside: PromQL's own braces always hold a matcher (`{job="x"}`), never a bare word.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
# Secrets meant for something other than Prometheus: the spec also picks the URL, so naming one of them as the
# bearer token would send it to any server the spec names.
_OTHER_SECRETS = (*SECRET_VARIABLES, "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "GH_TOKEN")


def analysis_findings(spec: Spec) -> Iterator[Finding]:
    prometheus = spec.analysis.prometheus
    if prometheus is None:
        return
    token = prometheus.bearer_token_env
    if token is not None and (
        token in _OTHER_SECRETS or token in spec.runtime.secret_env or token == spec.runtime.api_key_env
    ):
        yield (
            ("analysis", "prometheus", "bearer_token_env"),
            f"{token} holds a secret meant for bgdeploy or the model server, and it would be sent to "
            f"{prometheus.url}; give Prometheus a token of its own (e.g. PROMETHEUS_TOKEN)",
        )
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
