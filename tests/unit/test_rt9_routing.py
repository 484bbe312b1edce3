"""Red-team (issue #9): the router judgement catches nginx failing every request to colours that are up."""

from __future__ import annotations

from bgdeploy.plan.routing import ColourFacts, ProbeTally, RouterFacts, judge_router

UP = ColourFacts(running=True, healthy=True, address="bgdeploy-chat-blue:8000")
DOWN = ColourFacts(running=False, healthy=False, address=None)


def _facts(failing: int) -> RouterFacts:
    return RouterFacts(
        file_weights={"blue": 100},
        file_id="aaaaaaaaaaaa",
        file_addresses={"blue": "bgdeploy-chat-blue:8000"},
        answered=True,
        loaded_id="aaaaaaaaaaaa",
        deployment="chat",
        failing=failing,
    )


def test_nginx_failing_requests_to_a_healthy_colour_is_a_problem_repaired_by_a_reload() -> None:
    # A container-mode colour that came back at another IP: healthy on its own port, 502 through nginx,
    # which still holds the address it resolved when it loaded the config.
    judgement = judge_router("chat", _facts(failing=4), {"blue": UP, "green": DOWN}, live="blue", previous=None)
    assert not judgement.ok
    assert "stale address" in judgement.problems[0]
    assert judgement.repair == {"blue": 100}


def test_a_router_answering_200_is_fine() -> None:
    judgement = judge_router("chat", _facts(failing=0), {"blue": UP, "green": DOWN}, live="blue", previous=None)
    assert judgement.ok


def test_the_tally_counts_answers_that_were_not_200() -> None:
    tally = ProbeTally()
    tally.add({"x-bgdeploy-config": "aaaaaaaaaaaa"}, ready=False)
    tally.add({"x-bgdeploy-config": "aaaaaaaaaaaa"})
    assert (tally.answered, tally.failing, tally.loaded_id()) == (2, 1, "aaaaaaaaaaaa")
