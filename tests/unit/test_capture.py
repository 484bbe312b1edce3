"""Capture and replay, the pure parts: the router's capture config, reading and sampling captured lines, the
replayed request, and the gates. No body ever reaches a report line."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bgdeploy.plan.capture import (
    ColourReplay,
    ReplayResult,
    captured_bodies,
    choose,
    describe,
    for_replay,
    judge,
    keeper_command,
    sample_percent,
)
from bgdeploy.plan.nginx import Backend, RouterConfig, render_full_conf, render_http_block
from tests.unit.conftest import MINIMAL, load, problems


def config(tmp: str = "/tmp/cap-unit") -> RouterConfig:
    return RouterConfig(
        "cap-unit",
        18081,
        "127.0.0.1",
        60,
        (Backend("blue", "127.0.0.1:18001", 100),),
        f"{tmp}/access.log",
        capture_log=f"{tmp}/capture.jsonl",
        capture_paths=("/v1/chat/completions", "/v1/completions"),
        capture_sample=0.02,
        capture_max_body=4096,
    )


def test_the_spec_takes_replay_and_its_gates() -> None:
    text = MINIMAL + (
        "validation:\n  replay: {capture: {sample: 0.5, max_bytes: 1m}, requests: 20, seed: 3}\n"
        "  thresholds: {replay: {max_error_rate: 0.05, min_agreement: 0.9}}\n"
    )
    v = load(text).spec.validation
    assert v.replay is not None and v.replay.capture is not None and v.replay.capture.sample == 0.5
    assert v.replay.capture.paths == ["/v1/chat/completions", "/v1/completions"]
    assert v.thresholds.replay.max_error_rate == 0.05
    bad = problems(MINIMAL + "validation:\n  replay: {capture: {paths: ['/admin']}}\n")
    assert len(bad) == 1 and "validation.replay.capture.paths[0]" in bad[0] and bad[0].startswith("bluegreen.yaml:11:")


def test_capture_logs_only_sampled_json_posts_with_a_capped_body_in_memory() -> None:
    text = render_http_block(config())
    assert '\'{"ts":"$msec","path":"$uri","body":"$request_body"}\'' in text
    assert "2% 1;" in text and '"11POST" 1;' in text
    location = text.split("location = /v1/chat/completions {", 1)[1].split("}", 1)[0]
    assert "proxy_request_buffering on;" in location and "client_body_buffer_size 4096;" in location
    assert "access_log /tmp/cap-unit/access.log bgdeploy_cap_unit;" in location  # the main log still sees it
    assert "if=$bgdeploy_cap_unit_capture;" in location
    # Everything else under /v1/ streams the body through as before, never captured.
    rest = text.split("location /v1/ {", 1)[1].split("}", 1)[0]
    assert "proxy_request_buffering off;" in rest and "capture" not in rest
    assert "request_body" not in render_http_block(RouterConfig(**{**vars(config()), "capture_log": None}))


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (scripts/testbed up installs it)")
def test_nginx_accepts_the_capture_config(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_full_conf(config(str(tmp_path)), runtime_dir=str(tmp_path)))
    done = subprocess.run(["nginx", "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def test_sample_percent_is_nginx_s() -> None:
    assert [sample_percent(s) for s in (0.02, 0.5, 0.0001, 0.125)] == ["2%", "50%", "0.01%", "12.5%"]


def test_captured_lines_are_read_deduplicated_and_sampled_with_the_seed() -> None:
    def line(body: object, path: str = "/v1/chat/completions") -> str:
        return json.dumps({"ts": "1", "path": path, "body": json.dumps(body) if not isinstance(body, str) else body})

    chats = [{"model": "chat", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(30)]
    lines = [line(b) for b in chats] + [line(chats[0]), line(""), '{"ts": "1", "pa', line({"no": "prompt"})]
    bodies = captured_bodies(lines)
    assert len(bodies) == 31  # the cut line, the empty body (too big to hold) and the non-prompt are skipped
    first, again, other = choose(bodies, 10, 1), choose(bodies, 10, 1), choose(bodies, 10, 2)
    assert first == again and first != other and len({json.dumps(b) for b in first}) == 10
    assert len(choose(bodies, 100, 1)) == 30  # de-duplicated


def test_a_replayed_request_is_deterministic_and_capped() -> None:
    body = {"model": "chat", "messages": [], "stream": True, "temperature": 0.8, "max_tokens": 4000, "__path": "/x"}
    assert for_replay(body, 256) == {
        "model": "chat",
        "messages": [],
        "stream": False,
        "temperature": 0,
        "max_tokens": 256,
    }
    assert for_replay({"prompt": "p", "max_tokens": 5}, 256)["max_tokens"] == 5


def test_the_gates_and_the_line_show_aggregates_and_positions_only() -> None:
    raw = ReplayResult(80, ColourReplay(50, 5, 0.2), ColourReplay(50, 0, 0.1), 45, 40, (3, 9, 12, 30, 41))
    judged = judge(raw, 0.05, 1.5, 0.95)
    assert [(c.name, c.passed) for c in judged.checks] == [
        ("max_error_rate", False),
        ("max_latency_p95_vs_live", False),
        ("min_agreement", False),
    ]
    line = describe(judged)
    assert "green 10.0% errors" in line and "requests #3, 9, 12, 30, 41 differ" in line
    assert judge(raw, 0.1, 2.5, 0.8).passed
    assert json.loads(json.dumps(judged.to_json()))["disagreements"] == [3, 9, 12, 30, 41]


def test_the_keeper_is_one_sh_script_with_its_bound() -> None:
    argv = keeper_command(65536)
    assert argv[:2] == ["sh", "-c"] and "LIMIT=65536" in argv[2] and "truncate -s 0" in argv[2]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "validation:\n  thresholds: {replay: {max_error_rate: 0.1}}\n",
            "bluegreen.yaml:11:16: validation.thresholds.replay: replay gates need captured traffic to replay; add "
            "validation.replay.capture (e.g. {sample: 0.02}) or remove validation.thresholds.replay",
        ),
        (
            "validation:\n  replay: {requests: 5}\n",
            "bluegreen.yaml:11:3: validation.replay: validation.replay replays captured traffic; add capture: "
            "{sample: 0.02, max_bytes: 64m} or remove replay",
        ),
        (
            "validation:\n  replay: {capture: {max_bytes: 1k}}\n",
            "bluegreen.yaml:11:33: validation.replay.capture.max_bytes: max_bytes must be at least 64k",
        ),
        (
            "validation:\n  replay: {capture: {max_bytes: 100k, max_body: 64k}}\n",
            "bluegreen.yaml:11:49: validation.replay.capture.max_body: max_body 64k is more than a quarter of "
            "max_bytes 100k: raise max_bytes or lower max_body",
        ),
    ],
)
def test_replay_settings_that_cannot_work_are_located(extra: str, expected: str) -> None:
    assert problems(MINIMAL + extra) == [expected]
