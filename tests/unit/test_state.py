"""state.json and history.jsonl: round trips, and never an exception on a damaged file."""

from __future__ import annotations

import json

import pytest

from bgdeploy.plan.names import Colour
from bgdeploy.plan.state import STATE_VERSION, HostState, Release, history_line, parse_history


def release(colour: Colour = "blue", model: str = "m/a", spec_hash: str = "h1") -> Release:
    return Release(colour=colour, model=model, image="vllm/vllm-openai:v0.9.2", spec_hash=spec_hash, deployed_at="t")


# --- state.json -------------------------------------------------------------------------------------------


def test_round_trip() -> None:
    state = HostState(
        name="chat",
        live=release("green", "m/b", "h2"),
        previous=release("blue", "m/a", "h1"),
        since="2025-01-01T00:00:00Z",
        weights={"blue": 90, "green": 10},
    )
    raw = state.to_json()
    assert raw.endswith(b"\n")
    assert json.loads(raw)["version"] == STATE_VERSION
    back, warnings = HostState.from_json("chat", raw)
    assert warnings == []
    assert back == state


def test_round_trip_of_an_empty_state() -> None:
    state = HostState(name="chat")
    back, warnings = HostState.from_json("chat", state.to_json())
    assert (back, warnings) == (state, [])


def test_missing_file_is_an_empty_state_without_warnings() -> None:
    assert HostState.from_json("chat", None) == (HostState(name="chat"), [])


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe\x00", b""])
def test_invalid_json_warns_and_gives_an_empty_state(raw: bytes) -> None:
    state, warnings = HostState.from_json("chat", raw)
    assert state == HostState(name="chat")
    assert len(warnings) == 1
    assert "not valid JSON" in warnings[0]
    assert "rebuilding it from the containers" in warnings[0]


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"live"', b"42", b"null"])
def test_non_object_warns_and_gives_an_empty_state(raw: bytes) -> None:
    state, warnings = HostState.from_json("chat", raw)
    assert state == HostState(name="chat")
    assert warnings == ["state.json is not a JSON object; rebuilding it from the containers"]


def test_damaged_parts_are_dropped() -> None:
    raw = json.dumps(
        {
            "live": {"colour": "purple", "model": "m", "image": "i", "spec_hash": "h"},
            "previous": {"colour": "blue", "model": "m"},
            "since": 7,
            "weights": {"blue": 100, "green": "lots"},
        }
    ).encode()
    state, warnings = HostState.from_json("chat", raw)
    assert warnings == []
    assert state.live is None
    assert state.previous is None
    assert state.since == "7"
    assert state.weights == {"blue": 100}


def test_weights_that_are_not_a_mapping_are_ignored() -> None:
    state, _ = HostState.from_json("chat", b'{"weights": [1, 2]}')
    assert state.weights == {}


def test_release_without_deployed_at_reads_as_empty() -> None:
    r = Release.from_json({"colour": "green", "model": "m", "image": "i", "spec_hash": "h"})
    assert r == Release("green", "m", "i", "h", "")
    assert Release.from_json("blue") is None
    assert Release.from_json(None) is None


# --- with_live --------------------------------------------------------------------------------------------


def test_with_live_moves_the_old_live_to_previous() -> None:
    blue, green = release("blue", spec_hash="h1"), release("green", spec_hash="h2")
    state = HostState(name="chat", live=blue, weights={"blue": 90, "green": 10}).with_live(green, "now")
    assert state.live == green
    assert state.previous == blue
    assert state.since == "now"
    assert state.weights == {"green": 100}
    assert state.name == "chat"


def test_with_live_of_the_same_colour_keeps_previous() -> None:
    old_green = release("green", spec_hash="h0")
    blue, blue_again = release("blue", spec_hash="h1"), release("blue", spec_hash="h2")
    state = HostState(name="chat", live=blue, previous=old_green).with_live(blue_again, "later")
    assert state.live == blue_again
    assert state.previous == old_green
    assert state.weights == {"blue": 100}


def test_with_live_on_an_empty_state() -> None:
    blue = release("blue")
    state = HostState(name="chat").with_live(blue, "now")
    assert state.live == blue
    assert state.previous is None


def test_with_live_does_not_change_the_original() -> None:
    original = HostState(name="chat", live=release("blue"))
    original.with_live(release("green"), "now")
    assert original.live == release("blue")
    assert original.previous is None


# --- history.jsonl ----------------------------------------------------------------------------------------


def test_history_line_is_one_json_line() -> None:
    line = history_line({"outcome": "deployed", "note": "a\nb"})
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line) == {"outcome": "deployed", "note": "a\nb"}


def test_parse_history_of_nothing() -> None:
    assert parse_history(None) == []
    assert parse_history(b"") == []


def test_parse_history_keeps_the_last_entries_newest_last() -> None:
    raw = b"".join(history_line({"n": i}) for i in range(25))
    assert parse_history(raw, limit=3) == [{"n": 22}, {"n": 23}, {"n": 24}]
    assert [e["n"] for e in parse_history(raw)] == list(range(15, 25))


def test_parse_history_skips_bad_lines() -> None:
    raw = b"".join(
        [
            history_line({"n": 1}),
            b"{truncated\n",
            b"[1, 2]\n",
            b"\n",
            b"\xff\xfe garbage\n",
            history_line({"n": 2}),
        ]
    )
    assert parse_history(raw) == [{"n": 1}, {"n": 2}]


def test_parse_history_of_fewer_entries_than_the_limit() -> None:
    raw = history_line({"n": 1}) + history_line({"n": 2})
    assert parse_history(raw, limit=10) == [{"n": 1}, {"n": 2}]


def test_a_canary_in_progress_round_trips_and_sets_the_weights() -> None:
    from bgdeploy.plan.state import CanaryState

    release = Release("green", "acme/v2", "img:2", "h2", "2026-11-26T00:00:00Z")
    canary = CanaryState(new="green", old="blue", step=1, weight=50, release=release, paused="auto_promote is false",
                         aside=True)
    state = HostState(name="chat").with_canary(canary)
    assert state.weights == {"blue": 50, "green": 50}
    loaded, warnings = HostState.from_json("chat", state.to_json())
    assert warnings == [] and loaded.canary == canary
    assert loaded.with_live(release, "now").canary is None, "finishing the deploy ends the canary"


def test_a_damaged_canary_record_is_ignored_not_fatal() -> None:
    raw = b'{"name": "chat", "canary": {"new": "green", "old": "green", "step": "x"}}'
    loaded, _ = HostState.from_json("chat", raw)
    assert loaded.canary is None
