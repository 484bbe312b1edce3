"""A pull request's spec cannot point a host run (plan, preview) at a host or key the workflow did not pin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bgdeploy.errors import UsageError
from bgdeploy.github.pr_target import pr_target_problems, workflow_pins
from tests.unit.conftest import HOST_KEY, MINIMAL, load

OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"
PINS = f"gpu-1.example.com {HOST_KEY}\n[bastion.example.com]:2222 {HOST_KEY}\n"


def problems(spec_text: str, pins: str = PINS) -> list[str]:
    return pr_target_problems(load(spec_text).spec.target, pins)


def test_the_pinned_host_with_its_pinned_key_may_be_reached() -> None:
    assert problems(MINIMAL) == []
    assert workflow_pins("# c\n|1|hashed ssh-ed25519 AAAA\n" + PINS)["gpu-1.example.com"]


def test_another_host_named_by_the_pr_is_refused() -> None:
    text = MINIMAL.replace("gpu-1.example.com", "attacker.example")
    assert problems(text) == [
        "target: attacker.example is not in the workflow's known-hosts; a pull request cannot add a host"
    ]
    moved = MINIMAL.replace("  host_key:", "  port: 2200\n  host_key:")
    assert "[gpu-1.example.com]:2200 is not in the workflow's known-hosts" in problems(moved)[0]


def test_a_key_pinned_by_the_pr_for_the_right_host_is_refused() -> None:
    text = MINIMAL.replace(HOST_KEY, OTHER_KEY)
    assert problems(text) == [
        "target: the host key pinned for gpu-1.example.com is not the one in the workflow's known-hosts"
    ]


def test_a_bastion_of_the_prs_own_is_refused() -> None:
    jump = f'  jump: {{host: evil.example, host_key: "{HOST_KEY}"}}\n'
    text = MINIMAL.replace("model:", jump + "model:", 1)
    assert problems(text) == [
        "target.jump: evil.example is not in the workflow's known-hosts; a pull request cannot add a host"
    ]


def test_local_transport_and_key_files_from_the_checkout_are_refused() -> None:
    local = MINIMAL.split("target:")[0] + "target: {transport: local}\n" + "model:" + MINIMAL.split("model:")[1]
    assert "transport: local" in problems(local)[0]
    filed = MINIMAL.replace(f'  host_key: "{HOST_KEY}"', "  known_hosts: pins")
    assert "known_hosts file pins comes from the pull request" in problems(filed)[0]


def test_a_preview_on_a_pull_request_refuses_an_unpinned_host_before_connecting(tmp_path: Path) -> None:
    from bgdeploy.github.action import Runner

    spec = tmp_path / "bluegreen.yaml"
    spec.write_text(MINIMAL.replace("gpu-1.example.com", "127.0.0.1"))  # nothing may even try to connect
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    env = {
        "BGDEPLOY_SPEC": str(spec),
        "BGDEPLOY_MODE": "preview",
        "BGDEPLOY_SSH_KEY": "not a key: the run must stop before it is read",
        "BGDEPLOY_KNOWN_HOSTS": PINS,
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "RUNNER_TEMP": str(tmp_path),
    }
    with pytest.raises(UsageError, match=r"target: 127\.0\.0\.1 is not in the workflow's known-hosts"):
        Runner(env, [].append).run()
