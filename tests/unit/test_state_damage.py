"""A damaged state.json never crashes a command: lenient reading for `status`, a strict check (with the
repair) for the commands that change the host."""

from __future__ import annotations

import pytest

from bgdeploy.plan.state import HostState, damaged_message, parse_history, state_problems

GOOD_RELEASE = '{"colour": "blue", "model": "m", "image": "i", "spec_hash": "h", "deployed_at": "t"}'
DAMAGED = [
    pytest.param(b'{"weights": {"blue": Infinity}}', "not valid JSON: Infinity is not a JSON number", id="infinity"),
    pytest.param(b'{"since": NaN}', "NaN is not a JSON number", id="nan"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "not valid JSON: nested", id="deep-list"),
    pytest.param(b'{"live": ' + b'{"a": ' * 20 + b"1" + b"}" * 20 + b"}", "nested more than 8", id="deep-object"),
    pytest.param(b'{"live": "blue"}', "live: not a release", id="live-a-string"),
    pytest.param(b'{"weights": {"blue": "100"}}', "weights: not a map", id="weight-a-string"),
    pytest.param(b'{"weights": {"blue": 1e999}}', "weights: not a map", id="weight-huge-float"),
    pytest.param(b'{"weights": {"purple": 100}}', "weights: not a map", id="weight-unknown-colour"),
    pytest.param(b'{"since": 5}', "since: not a string", id="since-a-number"),
    pytest.param(
        b'{"canary": {"new": "green", "old": "blue", "step": 1e999, "weight": 10, "release": '
        + GOOD_RELEASE.encode()
        + b"}}",
        "canary: not a canary record",
        id="canary-step-overflow",
    ),
    pytest.param(b'{"live": {"colour": "blue", "model": [], "image": "i", "spec_hash": "h"}}', "must be strings"),
    pytest.param(b"\xff\xfe", "not valid JSON", id="not-utf8"),
    pytest.param(b"[]", "not a JSON object", id="a-list"),
]


@pytest.mark.parametrize(("raw", "problem"), DAMAGED)
def test_damage_is_named_and_never_raises(raw: bytes, problem: str) -> None:
    problems = state_problems(raw)
    assert any(problem in p for p in problems), problems
    state, _ = HostState.from_json("chat", raw)  # lenient: what `status` reads; never an exception
    assert state.name == "chat"


def test_what_bgdeploy_writes_has_no_problems() -> None:
    assert state_problems(None) == []
    assert state_problems(HostState(name="chat").to_json()) == []
    raw = b'{"version": 1, "live": ' + GOOD_RELEASE.encode() + b', "weights": {"blue": 100}, "since": "t"}'
    assert state_problems(raw) == []


def test_the_message_says_how_to_repair() -> None:
    text = damaged_message("/home/d/.bgdeploy/chat/state.json", ["since: not a string"])
    assert "since: not a string" in text
    assert "mv /home/d/.bgdeploy/chat/state.json /home/d/.bgdeploy/chat/state.json.damaged" in text


def test_a_deeply_nested_history_line_is_skipped() -> None:
    raw = b"[" * 100_000 + b"\n" + b'{"outcome": "deployed"}\n'
    assert parse_history(raw) == [{"outcome": "deployed"}]
