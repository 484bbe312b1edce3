"""The GitHub REST API stand-in (tests/github_stub): it checks requests against GitHub's OpenAPI description,
answers statefully where bgdeploy needs it, paginates like GitHub and injects faults."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.github_stub import GitHubStub, event_payload, examples_available, openapi_available, write_event
from tests.github_stub.server import SECONDARY_RATE_LIMIT_MESSAGE, openapi_path

TOKEN = "ghs_stubtoken0123456789"
HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": "bgdeploy-tests",
}


@pytest.fixture(autouse=True)
def _needs_npm_packages() -> None:
    if openapi_available() and examples_available():
        return
    message = f"{openapi_path()} or the webhook examples are missing: run scripts/setup-node"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def gh() -> Iterator[GitHubStub]:
    with GitHubStub(prefix="/api/v3", token=TOKEN) as stub:
        yield stub


@pytest.fixture
def client(gh: GitHubStub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gh.url, headers=HEADERS, timeout=10) as c:
        yield c


def test_valid_create_comment_is_accepted_and_stored(gh: GitHubStub, client: httpx.Client) -> None:
    r = client.post("/repos/octo/app/issues/7/comments", json={"body": "<!-- bgdeploy -->\nplan"})
    assert r.status_code == 201
    made = r.json()
    assert made["body"] == "<!-- bgdeploy -->\nplan"
    assert made["user"]["login"] == "github-actions[bot]"
    assert made["html_url"].endswith(f"/octo/app/issues/7#issuecomment-{made['id']}")
    assert r.headers["location"] == made["url"]
    assert [c["id"] for c in gh.comments("octo", "app", 7)] == [made["id"]]

    r = client.patch(f"/repos/octo/app/issues/comments/{made['id']}", json={"body": "updated"})
    assert r.status_code == 200 and r.json()["body"] == "updated"
    assert gh.comments("octo", "app", 7)[0]["body"] == "updated"
    assert gh.errors == []


def test_patch_of_unknown_comment_is_404_without_error(gh: GitHubStub, client: httpx.Client) -> None:
    r = client.patch("/repos/octo/app/issues/comments/424242", json={"body": "x"})
    assert r.status_code == 404
    assert r.json()["message"] == "Not Found"
    assert gh.errors == []  # a conforming request about a comment that does not exist


def test_wrong_body_type_is_refused_and_recorded(gh: GitHubStub, client: httpx.Client) -> None:
    r = client.post("/repos/octo/app/issues/7/comments", json={"body": 5})
    assert r.status_code == 422
    assert len(gh.errors) == 1
    assert "body['body']: 5 is not of type 'string'" in gh.errors[0]
    assert gh.comments("octo", "app", 7) == []


def test_missing_required_field_is_refused(gh: GitHubStub, client: httpx.Client) -> None:
    r = client.post("/repos/octo/app/deployments", json={"environment": "production"})
    assert r.status_code == 422
    assert any("'ref' is a required property" in e for e in gh.errors)
    r = client.post("/repos/octo/app/issues/7/comments")
    assert r.status_code == 422
    assert "requires a request body" in gh.errors[-1]


def test_unknown_path_and_method_are_404_and_recorded(gh: GitHubStub, client: httpx.Client) -> None:
    assert client.get("/repos/octo/app/no-such-thing").status_code == 404
    assert client.put("/repos/octo/app/issues/7/comments", json={"body": "x"}).status_code == 404
    assert "no operation in GitHub's description matches /repos/octo/app/no-such-thing" in gh.errors[0]
    assert "has no PUT" in gh.errors[1]


def test_parameters_are_typed_and_unknown_query_parameters_refused(gh: GitHubStub, client: httpx.Client) -> None:
    assert client.get("/repos/octo/app/issues/seven/comments").status_code == 422
    assert client.get("/repos/octo/app/issues/7/comments", params={"per_page": "many"}).status_code == 422
    assert client.get("/repos/octo/app/issues/7/comments", params={"perpage": 100}).status_code == 422
    assert "issue_number: 'seven' is not an integer" in gh.errors[0]
    assert "per_page: 'many' is not an integer" in gh.errors[1]
    assert "unknown query parameter 'perpage'" in gh.errors[2]


def test_authorization_is_required_and_checked(gh: GitHubStub) -> None:
    with httpx.Client(base_url=gh.url, headers={"User-Agent": "t"}) as anonymous:
        assert anonymous.get("/repos/octo/app/deployments").status_code == 401
        r = anonymous.get("/repos/octo/app/deployments", headers={"Authorization": f"token {TOKEN}"})
        assert r.status_code == 200
        r = anonymous.get("/repos/octo/app/deployments", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["message"] == "Bad credentials"
    assert len(gh.errors) == 2


def test_requests_outside_the_enterprise_prefix_are_refused(gh: GitHubStub) -> None:
    assert gh.url.endswith("/api/v3")
    with httpx.Client(headers=HEADERS) as c:
        assert c.get(gh.origin + "/repos/octo/app/deployments").status_code == 404
    assert "outside the API prefix" in gh.errors[0]


def test_pagination_walks_250_comments_in_three_pages_of_100(gh: GitHubStub, client: httpx.Client) -> None:
    seeded = gh.seed_comments("octo", "app", 7, [f"comment {i}" for i in range(250)])
    r = client.get("/repos/octo/app/issues/7/comments", params={"per_page": 100})
    links = httpx.Headers(r.headers).get("link", "")
    assert f'<{gh.origin}/api/v3/repos/octo/app/issues/7/comments?per_page=100&page=2>; rel="next"' in links
    assert f'<{gh.origin}/api/v3/repos/octo/app/issues/7/comments?per_page=100&page=3>; rel="last"' in links
    pages = [r.json()]
    while "next" in r.links:
        r = client.get(r.links["next"]["url"])
        assert r.status_code == 200
        pages.append(r.json())
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [c["id"] for p in pages for c in p] == [c["id"] for c in seeded]
    assert set(r.links) == {"prev", "first"}
    assert r.links["prev"]["url"].endswith("page=2") and r.links["first"]["url"].endswith("page=1")
    assert gh.errors == []


def test_pagination_defaults_to_30_and_caps_at_100(gh: GitHubStub, client: httpx.Client) -> None:
    gh.seed_comments("octo", "app", 8, ["x"] * 130)
    r = client.get("/repos/octo/app/issues/8/comments")
    assert len(r.json()) == 30
    assert r.links["last"]["url"].endswith("page=5")
    assert len(client.get("/repos/octo/app/issues/8/comments", params={"per_page": 500}).json()) == 100
    r = client.get("/repos/octo/app/issues/9/comments")
    assert r.json() == [] and "link" not in r.headers
    assert gh.errors == []


def test_merged_pull_request_of_a_commit(gh: GitHubStub, client: httpx.Client) -> None:
    sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    gh.set_commit_pulls(sha, [12])
    pulls = client.get(f"/repos/octo/app/commits/{sha}/pulls").json()
    assert [(p["number"], p["state"], p["merged_at"] is not None) for p in pulls] == [(12, "closed", True)]
    assert pulls[0]["html_url"] == "https://github.com/octo/app/pull/12"
    assert client.get(f"/repos/octo/app/commits/{'0' * 40}/pulls").json() == []
    assert gh.errors == []


def test_deployments_and_statuses(gh: GitHubStub, client: httpx.Client) -> None:
    sha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    r = client.post(
        "/repos/octo/app/deployments",
        json={
            "ref": sha,
            "environment": "gpu-prod",
            "auto_merge": False,
            "required_contexts": [],
            "payload": {"color": "green"},
            "description": None,
            "production_environment": True,
        },
    )
    assert r.status_code == 201
    deployment = r.json()
    assert (deployment["sha"], deployment["environment"]) == (sha, "gpu-prod")
    assert deployment["payload"] == {"color": "green"}
    for state in ("in_progress", "success"):
        r = client.post(
            f"/repos/octo/app/deployments/{deployment['id']}/statuses",
            json={"state": state, "log_url": "https://example.invalid/run/1", "auto_inactive": False},
        )
        assert r.status_code == 201 and r.json()["state"] == state
    other = client.post("/repos/octo/app/deployments", json={"ref": "main", "environment": "staging"}).json()

    listed = client.get("/repos/octo/app/deployments", params={"environment": "gpu-prod"}).json()
    assert [d["id"] for d in listed] == [deployment["id"]]
    assert [d["id"] for d in client.get("/repos/octo/app/deployments").json()] == [other["id"], deployment["id"]]
    statuses = client.get(f"/repos/octo/app/deployments/{deployment['id']}/statuses").json()
    assert [s["state"] for s in statuses] == ["success", "in_progress"]  # newest first, as GitHub lists them
    assert client.post("/repos/octo/app/deployments/999999/statuses", json={"state": "success"}).status_code == 404

    recorded = gh.deployments()
    assert recorded[0]["request"]["auto_merge"] is False and recorded[0]["request"]["required_contexts"] == []
    assert [s["state"] for s in gh.statuses(deployment["id"])] == ["in_progress", "success"]
    assert gh.errors == []


def test_status_state_outside_the_enum_is_refused(gh: GitHubStub, client: httpx.Client) -> None:
    deployment = client.post("/repos/octo/app/deployments", json={"ref": "main"}).json()
    r = client.post(f"/repos/octo/app/deployments/{deployment['id']}/statuses", json={"state": "rolled_back"})
    assert r.status_code == 422
    assert "'rolled_back' is not one of" in gh.errors[0]


def test_comment_body_over_github_limit_is_refused(gh: GitHubStub, client: httpx.Client) -> None:
    r = client.post("/repos/octo/app/issues/7/comments", json={"body": "x" * 65537})
    assert r.status_code == 422
    assert "maximum is 65536" in gh.errors[0]


def test_other_operations_answer_the_description_example(gh: GitHubStub, client: httpx.Client) -> None:
    r = client.get("/repos/octo/app/pulls/3")
    assert r.status_code == 200 and r.json()["number"] == 1347  # GitHub's own example pull request
    assert client.get("/repos/octo/app/contents/deploy/bluegreen.yaml").status_code == 200  # x-multi-segment
    assert gh.errors == []


def test_fault_injection(gh: GitHubStub, client: httpx.Client) -> None:
    flaky = gh.fail("POST", r"/issues/\d+/comments$", 502, times=2)
    codes = [client.post("/repos/octo/app/issues/7/comments", json={"body": "x"}).status_code for _ in range(3)]
    assert codes == [502, 502, 201]
    assert flaky.hits == 2 and len(gh.comments("octo", "app", 7)) == 1

    gh.fail("*", r"/deployments", 403, times=None)
    for _ in range(3):
        r = client.post("/repos/octo/app/deployments", json={"ref": "main"})
        assert r.status_code == 403 and r.json()["message"] == "Resource not accessible by integration"
    gh.clear_faults()

    gh.fail_secondary_rate_limit("GET", r"/comments$", retry_after=1)
    r = client.get("/repos/octo/app/issues/7/comments")
    assert r.status_code == 403 and r.headers["retry-after"] == "1"
    assert r.json()["message"] == SECONDARY_RATE_LIMIT_MESSAGE
    assert client.get("/repos/octo/app/issues/7/comments").status_code == 200

    gh.fail("GET", r"/comments$", 429, headers={"retry-after": "2"})
    assert client.get("/repos/octo/app/issues/7/comments").status_code == 429
    gh.fail_rate_limit("GET", r"/comments$")
    r = client.get("/repos/octo/app/issues/7/comments")
    assert r.status_code == 403 and r.headers["x-ratelimit-remaining"] == "0"
    assert gh.errors == []


def test_invalid_requests_are_refused_even_when_a_fault_is_armed(gh: GitHubStub, client: httpx.Client) -> None:
    fault = gh.fail("POST", r"comments", 502)
    assert client.post("/repos/octo/app/issues/7/comments", json={}).status_code == 422
    assert fault.hits == 0 and len(gh.errors) == 1


def test_every_request_is_recorded(gh: GitHubStub, client: httpx.Client) -> None:
    client.post("/repos/octo/app/issues/7/comments?x=1", json={"body": "plan for model-a"})
    (req,) = gh.requests
    assert (req.method, req.path, req.query) == ("POST", "/api/v3/repos/octo/app/issues/7/comments", {"x": ["1"]})
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert '"plan for model-a"' in req.body
    assert "plan for model-a" in gh.transcript() and "hunter2" not in gh.transcript()


def test_description_loads_fast_and_once() -> None:
    from tests.github_stub.server import load_description

    description = load_description()
    assert load_description() is description
    assert description.load_seconds < 5, f"loading the description took {description.load_seconds:.2f} s"
    assert description.match("/repos/o/r/issues/comments/5") is not None
    route, params = description.match("/repos/o/r/issues/comments/5") or (None, {})
    assert route is not None and route.template == "/repos/{owner}/{repo}/issues/comments/{comment_id}"
    assert params == {"owner": "o", "repo": "r", "comment_id": "5"}


def test_every_operation_of_the_description_is_routed_to_itself() -> None:
    from tests.github_stub.server import iter_operations, load_description

    description = load_description()
    wrong = []
    for op in iter_operations(description):
        path = re.sub(r"\{[^}]+\}", "x1", op.template)
        found = description.match(path, op.method)
        if found is None or op.method not in found[0].operations or found[0].template != op.template:
            wrong.append(f"{op.method} {op.template} -> {found[0].template if found else None}")
    assert wrong == []


def test_webhook_examples(tmp_path: Path) -> None:
    opened = event_payload("pull_request", "opened")
    assert opened["action"] == "opened" and isinstance(opened["pull_request"]["number"], int)
    assert opened["repository"]["full_name"] == "Codertocat/Hello-World"
    assert re.fullmatch(r"[0-9a-f]{40}", opened["pull_request"]["head"]["sha"])
    synchronize = event_payload("pull_request", "synchronize")
    assert synchronize["after"] == synchronize["pull_request"]["head"]["sha"]
    push = event_payload("push")
    assert push["ref"].startswith("refs/heads/") and not push["deleted"]
    opened["number"] = 99
    assert event_payload("pull_request", "opened")["number"] != 99  # a fresh copy each time
    path = write_event(tmp_path, opened)
    assert path.read_text(encoding="utf-8").startswith("{")
    with pytest.raises(KeyError, match="known actions"):
        event_payload("pull_request", "exploded")
