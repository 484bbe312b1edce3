"""The Prometheus HTTP API (httpx): one instant query, its value as a number. Failures become data."""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class QueryAnswer:
    """The largest sample of an instant query (None: no data), or why there is none."""

    value: float | None
    error: str | None = None


class PrometheusClient:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def close(self) -> None:
        self._client.close()

    def query(self, promql: str) -> QueryAnswer:
        """GET /api/v1/query. A vector's largest sample is the value; an empty vector is no data."""
        try:
            response = self._client.get("/api/v1/query", params={"query": promql})
        except httpx.HTTPError as exc:
            return QueryAnswer(None, f"Prometheus did not answer: {type(exc).__name__}")
        try:
            body = response.json()
        except ValueError:
            return QueryAnswer(None, f"HTTP {response.status_code}: not a Prometheus API answer")
        if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            return QueryAnswer(None, f"HTTP {response.status_code}: {str(error or 'query failed')[:200]}")
        return QueryAnswer(largest_sample(body.get("data")))


def largest_sample(data: object) -> float | None:
    if not isinstance(data, dict):
        return None
    kind, result = data.get("resultType"), data.get("result")
    pairs: list[object] = []
    if kind in ("scalar", "string") and isinstance(result, list):
        pairs = [result]
    elif kind == "vector" and isinstance(result, list):
        pairs = [item.get("value") for item in result if isinstance(item, dict)]
    values: list[float] = []
    for pair in pairs:
        if isinstance(pair, list) and len(pair) == 2:
            try:
                number = float(pair[1])
            except (TypeError, ValueError):
                continue
            if not math.isnan(number):
                values.append(number)
    return max(values) if values else None
