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


def test_capture_line_shows_sizes_and_counts_against_the_bound() -> None:
    capture = {
        "enabled": True,
        "directory": "/home/deploy/.bgdeploy/chat/router/capture",
        "bytes_stored": 3 * 1024,
        "max_bytes": 64 * 1024,
        "requests": 12,
        "keeper": "running",
    }
    text = render_status(data(capture=capture))
    assert "capture: on, keeper running: 12 request(s) held, 3.0 KiB of at most 64.0 KiB" in text.splitlines()
    assert "warning" not in text


def test_capture_without_its_keeper_warns_and_no_capture_says_nothing() -> None:
    capture = {
        "enabled": True,
        "directory": "d",
        "bytes_stored": 0,
        "max_bytes": 1024,
        "requests": 0,
        "keeper": "absent",
    }
    text = render_status(data(capture=capture))
    assert "capture: on, keeper absent: 0 request(s) held, 0 B of at most 1.0 KiB" in text
    assert "warning: the capture keeper is absent" in text
    assert "capture" not in render_status(data(capture=None))
    assert "capture" not in render_status(data())
