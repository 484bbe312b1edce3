"""Which release is live when state.json, the router and the containers disagree: facts in, a decision and
its warnings out, no host."""

from __future__ import annotations

from bgdeploy.plan.live import decide_live
from bgdeploy.plan.state import HostState, Release

BLUE = Release("blue", "acme/v1", "img:1", "h1", "2026-01-01T00:00:00Z")
GREEN = Release("green", "acme/v2", "img:2", "h2", "2026-01-02T00:00:00Z")
GREEN_LABELS = Release("green", "acme/v2", "img:2", "h2", "")  # what the container's labels say


def recorded(live: Release | None) -> HostState:
    state = HostState("chat")
    return state.with_live(live, "2026-01-02T00:00:01Z") if live else state


def test_all_agree_and_state_json_gives_the_exact_release() -> None:
    assert decide_live(recorded(GREEN), {"green": GREEN_LABELS}, {"green": 100}) == (GREEN, [])


def test_the_router_wins_over_a_stale_state_json() -> None:
    live, warnings = decide_live(recorded(BLUE), {"blue": BLUE, "green": GREEN_LABELS}, {"green": 100})
    assert live == GREEN_LABELS
    assert warnings == [
        "state.json says blue is live but the router sends traffic to green; trusting the router (a previous "
        "deploy was interrupted)"
    ]


def test_a_canary_split_is_live_where_most_traffic_goes() -> None:
    live, warnings = decide_live(recorded(BLUE), {"blue": BLUE, "green": GREEN_LABELS}, {"blue": 90, "green": 10})
    assert (live, warnings) == (BLUE, [])


def test_a_router_pointing_at_a_stopped_colour_means_nothing_serves() -> None:
    live, warnings = decide_live(recorded(GREEN), {"green": None}, {"green": 100})
    assert live is None
    assert warnings == ["the router points at green, whose container is not running: nothing serves now"]


def test_without_a_router_config_state_json_alone_is_not_trusted() -> None:
    assert decide_live(recorded(BLUE), {"blue": BLUE}, None) == (
        None,
        ["state.json says blue is live but no router config routes to it"],
    )
    assert decide_live(recorded(BLUE), {"blue": None}, None) == (
        None,
        ["state.json says blue is live but its container is not running"],
    )


def test_a_first_deploy_has_nothing_live_and_nothing_to_say() -> None:
    assert decide_live(recorded(None), {"blue": None, "green": None}, None) == (None, [])
