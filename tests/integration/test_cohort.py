"""Sticky canary cohorts through a real nginx: with rollout.cohort keyed by X-User-Id, each user stays on one
colour for a whole step, moves only forward as green's weight grows, and the shares follow the weights."""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from bgdeploy.plan.cohort import cohort_colour
from tests.integration.deployments import Deployment, ok

pytestmark = pytest.mark.integration

USERS = [f"coh-user-{i:03d}" for i in range(200)]
PER_USER = 2  # requests per user and step: both must land on the same colour


def colours_by_user(dep: Deployment) -> dict[str, set[str]]:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": False}

    def ask(client: httpx.Client, user: str) -> tuple[str, str]:
        answer = client.post("/v1/chat/completions", json=body, headers={"X-User-Id": user})
        assert answer.status_code == 200, answer.text
        return user, answer.headers["x-bgdeploy-colour"]

    seen: dict[str, set[str]] = {}
    with httpx.Client(base_url=dep.url, timeout=30) as client, ThreadPoolExecutor(max_workers=4) as pool:
        for user, colour in pool.map(lambda u: ask(client, u), USERS * PER_USER):
            seen.setdefault(user, set()).add(colour)
    return seen


def keyless_colours(dep: Deployment, count: int = 60) -> Counter[str]:
    with httpx.Client(base_url=dep.url, timeout=30) as client:
        return Counter(client.get("/health").headers["x-bgdeploy-colour"] for _ in range(count))


def test_users_stick_to_a_colour_and_only_move_forward(dep: Deployment) -> None:
    dep.name = "coh-" + uuid.uuid4().hex[:8]
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    rollout: dict[str, Any] = {
        "strategy": "canary",
        "steps": [{"weight": 10, "bake": "1s"}, {"weight": 50, "bake": "1s"}],
        "analysis_interval": "1s",
        "auto_promote": False,
        "rollback_on": {"min_requests": 1},
        "cohort": {"by": "header:X-User-Id"},
    }
    dep.write("acme/chat-v2", rollout=rollout)
    # No traffic during the short bakes: each step is inconclusive and the canary holds at its weight.
    paused = ok(dep.run("deploy"))
    assert "Canary paused" in paused and "10%" in paused
    at_10 = colours_by_user(dep)
    # Keyless requests (fallback: request) are split per request: both colours answer some.
    assert set(keyless_colours(dep)) == {"blue", "green"}
    promoted = ok(dep.run("promote"))
    assert "Canary paused" in promoted and "50%" in promoted
    at_50 = colours_by_user(dep)

    for weight, seen in ((10, at_10), (50, at_50)):
        hopping = {u: c for u, c in seen.items() if len(c) != 1}
        assert not hopping, f"users served by both colours within the {weight}% step: {hopping}"
        colour = {u: next(iter(c)) for u, c in seen.items()}
        # nginx's own hash, reproduced: every user is where plan/cohort.py says.
        assert colour == {u: cohort_colour(u, "green", "blue", weight) for u in USERS}
        share = sum(c == "green" for c in colour.values()) / len(USERS)
        assert abs(share - weight / 100) <= 0.08, (weight, share)
    back = [u for u in USERS if at_10[u] == {"green"} and at_50[u] != {"green"}]
    assert not back, f"users moved from green back to blue: {back}"

    ok(dep.run("promote"))  # the full switch
    assert dep.serving_model() == "acme/chat-v2"
