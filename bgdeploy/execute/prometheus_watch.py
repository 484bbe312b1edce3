"""analysis.prometheus during the bake and each canary step: every query for both colours at each look,
judged for the new colour; a breach rolls back like any other live breach."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit, urlunsplit

from bgdeploy.analysis.prometheus import QueryState, look_text, render_query
from bgdeploy.execute.analysis_breach import AnalysisBreach
from bgdeploy.execute.session import Session
from bgdeploy.plan.names import Colour
from bgdeploy.transports.prometheus import PrometheusClient
from bgdeploy.untrusted import secrets as secret_registry


def register_token(token: str | None) -> None:
    """The bearer token is a secret like the others: masked in every output from now on."""
    secret_registry.register(token)


@dataclass
class PrometheusWatch:
    session: Session
    client: PrometheusClient
    state: QueryState

    @classmethod
    def start(cls, session: Session) -> PrometheusWatch | None:
        config = session.loaded.spec.analysis.prometheus
        if config is None:
            return None
        url = config.url
        if config.via == "host":
            # The URL as the GPU host sees it, reached through a forward over the SSH connection.
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            local = session.host.reach(port, parts.hostname or "127.0.0.1")
            url = urlunsplit((parts.scheme, f"127.0.0.1:{local}", parts.path, parts.query, ""))
        token = None
        if config.bearer_token_env:
            token = session.environ.get(config.bearer_token_env)
            register_token(token)
            if not token:
                session.warn(f"{config.bearer_token_env} is not set: querying Prometheus without a bearer token")
        return cls(session, PrometheusClient(url, token=token, timeout=config.timeout), QueryState())

    def look(self, new: str, old: str | None, elapsed: float) -> None:
        """Every query for each colour; recorded in the result; DeployFailed on a breach of the new colour."""
        session = self.session
        config = session.loaded.spec.analysis.prometheus
        assert config is not None
        breaches: list[str] = []
        for query in config.queries:
            values: dict[str, float | None] = {}
            error: str | None = None
            for colour in [new, old] if old else [new]:
                promql = render_query(
                    query.query,
                    colour=colour,
                    name=session.loaded.spec.name,
                    container=session.layout.container(cast(Colour, colour)),
                )
                answer = self.client.query(promql)
                values[colour] = answer.value
                if colour == new and answer.error:
                    error = answer.error
            look = self.state.judge(query, round(elapsed, 3), values[new], values.get(old or ""), error)
            session.result.prometheus.append(look)
            if look.breached:
                breaches.append(look_text(look, query.for_))
        if breaches:
            raise AnalysisBreach(f"{new} breached analysis.prometheus after {elapsed:.0f}s: " + "; ".join(breaches))

    def close(self) -> None:
        self.client.close()
