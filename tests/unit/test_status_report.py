"""`bgdeploy status` as text, rendered from the same data `--json` prints (numbers only)."""

from __future__ import annotations

from typing import Any

from bgdeploy.report.status import render_status


def data(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "chat",
        "host": "deploy@gpu-1:22",
        "live": {"colour": "blue", "model": "acme/v1", "image": "img:1", "spec_hash": "h1", "deployed_at": "t0"},
        "since": "t1",
        "router": {"mode": "container", "weights": {"blue": 90, "green": 10}},
        "canary": None,
        "traffic": {},
        "colours": {"blue": {"container": "absent"}, "green": {"container": "absent"}},
        "history": [],
        "warnings": [],
    }
    return {**base, **extra}


def test_recent_traffic_is_worded_from_the_numbers() -> None:
    traffic = {
        "green": {"requests": 120, "errors": 1, "error_rate": 1 / 120, "p95_latency_s": 0.85, "outcome": "passed"}
    }
    text = render_status(data(traffic=traffic))
    assert "  recent traffic: green 120 req, 1 err (0.83%), p95 850ms" in text.splitlines()
    assert "router (container): blue 90%, green 10%" in text


def test_nothing_live_and_no_router_config() -> None:
    text = render_status(data(live=None, router={"mode": "host", "weights": {}}))
    assert text.splitlines()[1:3] == ["live: nothing", "router (host): no config"]
