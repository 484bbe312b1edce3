"""Fleets without any host: the spec keys, each host's own spec, the batches, the report."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgdeploy.errors import UsageError
from bgdeploy.fleet.batches import count, plan_batches, too_many_failures
from bgdeploy.fleet.members import lock_order, members, select
from bgdeploy.fleet.report import render_fleet, render_text
from bgdeploy.fleet.result import FleetResult, HostReport
from bgdeploy.plan.state import Release
from tests.unit.conftest import HOST_KEY, load, problems

OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPSPXmYMrVoqgTlfMzPPIJl83h5Jcwvd6E1kN/VggWlE"

FLEET = f"""\
version: 1
name: chat
target:
  user: deploy
  port: 2200
  host_key: "{HOST_KEY}"
  hosts:
    - host: gpu-a
    - host: gpu-b
      port: 22
      label: b
      host_key: "{OTHER_KEY}"
    - host: gpu-c
      gpus: {{blue: [0], green: [1]}}
model:
  name: m
runtime:
  image: vllm/vllm-openai:v0.9.2
rollout:
  fleet: {{batch: "50%", first_batch: 1, pause: 30s, max_failed_hosts: 1}}
"""


# -- batches ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [(1, 4, 1), (3, 2, 2), ("25%", 4, 1), ("25%", 5, 2), ("50%", 3, 2), ("100%", 7, 7), ("1%", 3, 1)],
)
def test_a_batch_size_is_a_count_or_a_percentage_rounded_up(value: int | str, total: int, expected: int) -> None:
    assert count(value, total) == expected


def test_first_batch_then_the_rest_in_batches() -> None:
    assert plan_batches(list("abcde"), 1, 2, 5) == [["a"], ["b", "c"], ["d", "e"]]
    assert plan_batches(list("abcd"), "50%", "25%", 4) == [["a", "b"], ["c"], ["d"]]
    assert plan_batches(list("ab"), 1, 1, 2) == [["a"], ["b"]]
    assert plan_batches([], 1, 1, 3) == []


def test_percentages_are_of_the_whole_fleet_not_of_the_hosts_left_to_change() -> None:
    # 4 hosts, 2 already live: 50% is still two hosts at once.
    assert plan_batches(["c", "d"], 1, "50%", 4) == [["c"], ["d"]]
    assert plan_batches(["c", "d"], "50%", 1, 4) == [["c", "d"]]


@given(
    items=st.lists(st.sampled_from(string.ascii_lowercase), max_size=30, unique=True),
    first=st.one_of(st.integers(1, 40), st.integers(1, 100).map(lambda p: f"{p}%")),
    batch=st.one_of(st.integers(1, 40), st.integers(1, 100).map(lambda p: f"{p}%")),
)
def test_batches_cover_every_host_once_in_order(items: list[str], first: int | str, batch: int | str) -> None:
    batches = plan_batches(items, first, batch, max(1, len(items)))
    assert [x for b in batches for x in b] == items
    assert all(b for b in batches)


def test_the_rollout_stops_only_beyond_max_failed_hosts() -> None:
    assert not too_many_failures(0, 0)
    assert too_many_failures(1, 0)
    assert not too_many_failures(1, 1)


# -- members ----------------------------------------------------------------------------------------------


def test_each_host_gets_its_own_single_host_spec() -> None:
    spec = load(FLEET).spec
    a, b, c = members(spec)
    assert (a.label, a.address, b.label, b.address, c.label) == (
        "gpu-a:2200",
        "gpu-a:2200",
        "b",
        "gpu-b:22",
        "gpu-c:2200",
    )
    for m in (a, b, c):
        assert m.spec.target.hosts is None
        assert m.spec.target.host == m.host
        assert m.spec.target.user == "deploy"
    assert a.spec.target.host_key == HOST_KEY
    assert b.spec.target.host_key == OTHER_KEY
    assert c.spec.gpus.green == [1] and a.spec.gpus.green == [0]


def test_a_hosts_spec_hash_ignores_batches_and_the_other_hosts() -> None:
    """Resizing batches or adding a host must not redeploy the hosts that already run the release."""
    before = {m.label: load_hash(m) for m in members(load(FLEET).spec)}
    changed = FLEET.replace('batch: "50%"', "batch: 1").replace(
        "    - host: gpu-a\n", "    - host: gpu-a\n    - host: gpu-z\n"
    )
    after = {m.label: load_hash(m) for m in members(load(changed).spec)}
    assert {k: after[k] for k in before} == before
    model_changed = {m.label: load_hash(m) for m in members(load(FLEET.replace("name: m\n", "name: m2\n")).spec)}
    assert all(model_changed[k] != before[k] for k in before)


def load_hash(member: object) -> str:
    import dataclasses

    from bgdeploy.spec.load import LoadedSpec

    loaded = load(FLEET)
    return LoadedSpec.spec_hash.fget(dataclasses.replace(loaded, spec=member.spec))  # type: ignore[attr-defined,union-attr]


def test_host_selects_one_member_by_label_or_address() -> None:
    all_members = members(load(FLEET).spec)
    assert [m.label for m in select(all_members, "b")] == ["b"]
    assert [m.label for m in select(all_members, "gpu-c")] == ["gpu-c:2200"]
    assert len(select(all_members, None)) == 3
    with pytest.raises(UsageError, match="known: gpu-a:2200, b, gpu-c:2200"):
        select(all_members, "gpu-x")


def test_locks_are_taken_in_address_order_whatever_the_spec_order() -> None:
    all_members = members(load(FLEET).spec)
    assert [m.host for m in lock_order(list(reversed(all_members)))] == ["gpu-a", "gpu-b", "gpu-c"]


def test_a_single_host_spec_is_a_fleet_of_one() -> None:
    spec = load(FLEET.split("  hosts:")[0] + "  host: gpu-1\nmodel:\n  name: m\nruntime:\n  image: x\n").spec
    (only,) = members(spec)
    assert only.spec is spec and only.label == "gpu-1:2200"


# -- spec -------------------------------------------------------------------------------------------------


def test_fleet_spec_problems_are_located_with_a_fix() -> None:
    text = f"""\
version: 1
name: chat
target:
  host: gpu-0
  hosts:
    - host: gpu-a
    - host: gpu-a
      label: a2
    - host: gpu-c
      label: a2
      host_key: "{OTHER_KEY}"
      known_hosts: kh
      gpus: {{blue: [1, 1]}}
model:
  name: m
runtime:
  image: x
rollout:
  fleet: {{first_batch: 4, max_failed_hosts: 3}}
"""
    found = problems(text)
    assert found == [
        "bluegreen.yaml:5:3: target.hosts: give target.host (one server) or target.hosts (a fleet), not both",
        "bluegreen.yaml:6:7: target.hosts[0]: the host key of gpu-a must be pinned: add host_key (one line of "
        "`ssh-keyscan -t ed25519 HOST` without the host name) or known_hosts here or in target",
        "bluegreen.yaml:7:7: target.hosts[1]: the host key of gpu-a must be pinned: add host_key (one line of "
        "`ssh-keyscan -t ed25519 HOST` without the host name) or known_hosts here or in target",
        "bluegreen.yaml:7:13: target.hosts[1].host: gpu-a:22 is already host #1",
        "bluegreen.yaml:10:14: target.hosts[2].label: label 'a2' is already used by host #2; labels are unique",
        "bluegreen.yaml:12:20: target.hosts[2].known_hosts: give host_key or known_hosts, not both",
        "bluegreen.yaml:13:14: target.hosts[2].gpus.blue: gpus.blue lists a GPU twice; list each index once",
        "bluegreen.yaml:19:24: rollout.fleet.first_batch: first_batch is 4 but the fleet has 3 host(s); at most 3",
        "bluegreen.yaml:19:45: rollout.fleet.max_failed_hosts: max_failed_hosts 3 lets every one of the 3 hosts "
        "fail without stopping the rollout; at most 2",
    ]


@pytest.mark.parametrize("value", ['"0%"', '"150%"', "0", '"two"', "-1"])
def test_a_bad_batch_size_says_what_is_allowed(value: str) -> None:
    (found,) = problems(FLEET.replace('batch: "50%"', f"batch: {value}"))
    assert found.startswith("bluegreen.yaml:20:18: rollout.fleet.batch: must be a number of hosts (1 or more) or a ")


def test_fleet_and_local_transport_do_not_mix() -> None:
    found = problems(FLEET.replace("  user: deploy\n", "  user: deploy\n  transport: local\n"))
    assert (
        "bluegreen.yaml:8:3: target.hosts: transport: local is this one machine; a fleet (target.hosts) needs "
        in (found[0])
    )


def test_the_example_fleet_spec_is_valid() -> None:
    from pathlib import Path

    from bgdeploy.spec import load_spec

    spec = load_spec(str(Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml")).spec
    assert spec.target.hosts is not None and len(spec.target.hosts) == 3


# -- report -----------------------------------------------------------------------------------------------


def _release(model: str, colour: str = "blue") -> Release:
    return Release(colour=colour, model=model, image="img", spec_hash="h", deployed_at="now")  # type: ignore[arg-type]


def test_the_report_has_one_row_per_host_and_folds_the_details() -> None:
    result = FleetResult(command="deploy", name="chat", outcome="failed", failure="1 host(s) failed")
    result.batches = [["a"], ["b"]]
    result.hosts = [
        HostReport("a", "a:22", 1, "rolled-back", _release("m1"), _release("m1"), seconds=12.5),
        HostReport("b", "b:22", 2, "failed", _release("m1"), _release("m1"), failure="validation failed"),
        HostReport("c|<b>@x", "c:22", None, "untouched", _release("m0")),
    ]
    text = render_fleet(result)
    assert "❌ **Fleet deploy failed**: chat (0/3 hosts deployed, failed: b): 1 host(s) failed" in text
    assert "| a | 1 | m1 \\(blue\\) | m1 \\(blue\\) | ↩️ rolled back | - | - | 12.5s |" in text
    assert "| c\\|&lt;b&gt;@\u200dx | - | m0 \\(blue\\) | nothing | ➖ untouched |" in text
    assert "different releases" in text
    assert "Batches: 1: a; 2: b" in text
    summary = render_text(result)
    assert "  b batch 2: failed: validation failed" in summary
    data = json.loads(result.to_json())
    assert data["hosts_failed"] == ["b"] and data["hosts_deployed"] == []
    assert [h["label"] for h in data["hosts"]] == ["a", "b", "c|<b>@x"]


def test_preflight_blockers_are_listed_with_their_host() -> None:
    result = FleetResult(command="deploy", name="chat", outcome="blocked", failure="preflight found blockers on b")
    result.hosts = [HostReport("a", "a:22"), HostReport("b", "b:22", outcome="blocked", blockers=["image x missing"])]
    text = render_fleet(result)
    assert "#### Preflight blockers (nothing was changed on any host)" in text
    assert "- **b**: image x missing" in text
