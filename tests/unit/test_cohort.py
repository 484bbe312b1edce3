"""Sticky canary cohorts: the spec key, the nginx config it renders, and nginx's hash reproduced exactly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bgdeploy.plan.cohort import cohort_colour, murmur2, nginx_variable, split_colour
from bgdeploy.plan.nginx import Backend, RouterConfig, render_full_conf, render_http_block
from tests.unit.conftest import MINIMAL, load, problems

CANARY = "rollout:\n  strategy: canary\n  steps: [{weight: 10, bake: 1m}, {weight: 50, bake: 1m}]\n"


def config(green: int, **cohort: str) -> RouterConfig:
    backends = (Backend("blue", "127.0.0.1:18001", 100 - green), Backend("green", "127.0.0.1:18002", green))
    return RouterConfig("coh-unit", 18080, "127.0.0.1", 60, backends, "/tmp/coh-unit.log", **cohort)  # type: ignore[arg-type]


def test_the_spec_takes_a_cohort_with_a_fallback() -> None:
    spec = load(MINIMAL + CANARY + "  cohort: {by: 'header:X-User-Id', fallback: live}\n").spec
    assert spec.rollout.cohort is not None
    assert (spec.rollout.cohort.by, spec.rollout.cohort.fallback) == ("header:X-User-Id", "live")
    assert load(MINIMAL + CANARY + "  cohort: {by: ip}\n").spec.rollout.cohort.fallback == "request"  # type: ignore[union-attr]


def test_a_bad_cohort_key_or_a_cohort_without_canary_is_located() -> None:
    bad = problems(MINIMAL + CANARY + "  cohort: {by: 'header:X_User'}\n")
    assert len(bad) == 1 and bad[0].startswith("bluegreen.yaml:13:") and "rollout.cohort.by" in bad[0]
    wrong = problems(MINIMAL + "rollout:\n  cohort: {by: ip}\n")
    assert wrong == [
        "bluegreen.yaml:11:3: rollout.cohort: cohort only applies to a canary (all-at-once moves every user at "
        "once); set strategy: canary or remove it"
    ]


@pytest.mark.parametrize(
    ("by", "variable"),
    [
        ("header:X-User-Id", "http_x_user_id"),
        ("header:Authorization", "http_authorization"),
        ("cookie:sid", "cookie_sid"),
        ("ip", "remote_addr"),
    ],
)
def test_each_key_is_an_nginx_variable(by: str, variable: str) -> None:
    assert nginx_variable(by) == variable


def test_murmur2_is_nginx_s() -> None:
    # Fixed points of nginx's ngx_murmur_hash2 (checked against a real nginx by the integration test too).
    assert murmur2(b"") == 0
    assert {murmur2(bytes(range(n))) for n in range(9)}.__len__() == 9  # every tail length takes its own path


def test_the_new_colour_is_listed_first_and_the_key_is_never_logged() -> None:
    text = render_http_block(config(10, cohort_by="header:X-User-Id"))
    assert 'split_clients "${http_x_user_id}" $bgdeploy_coh_unit_cohort {\n    10% green;\n    * blue;\n}' in text
    assert '"" $bgdeploy_coh_unit_keyless;' in text  # fallback: request splits a keyless request on its id
    log_format = text.split("log_format", 1)[1].split(";", 1)[0]
    assert "http_x_user_id" not in log_format and "colour" in log_format
    at_60 = render_http_block(config(60, cohort_by="header:X-User-Id"))
    assert "    60% green;\n    * blue;" in at_60  # never re-ordered by size: green's slice only grows
    live = render_http_block(config(10, cohort_by="cookie:sid", cohort_fallback="live"))
    assert '"" blue;' in live and "keyless" not in live


def test_without_a_cohort_the_split_is_per_request_as_before() -> None:
    text = render_http_block(config(10))
    assert 'split_clients "${request_id}"' in text and "cohort" not in text


def test_a_user_only_moves_forward_and_shares_follow_the_weights() -> None:
    users = [f"user-{i}" for i in range(5000)]
    previous: dict[str, str] = {}
    for weight in (1, 10, 25, 50, 75, 99):
        now = {u: cohort_colour(u, "green", "blue", weight) for u in users}
        assert all(now[u] == "green" for u, c in previous.items() if c == "green"), weight
        share = sum(c == "green" for c in now.values()) / len(users)
        assert abs(share - weight / 100) < 0.03, (weight, share)
        previous = now
    assert cohort_colour("anyone", "green", "blue", 100) == "green"
    assert split_colour("anyone", [(0, "green")], "blue") == "blue"


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (scripts/testbed up installs it)")
def test_nginx_accepts_every_cohort_config(tmp_path: Path) -> None:
    for cohort in (
        {"cohort_by": "header:X-User-Id"},
        {"cohort_by": "cookie:sid", "cohort_fallback": "live"},
        {"cohort_by": "ip"},
    ):
        conf = tmp_path / "nginx.conf"
        conf.write_text(render_full_conf(config(10, **cohort), runtime_dir=str(tmp_path)))
        done = subprocess.run(["nginx", "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
