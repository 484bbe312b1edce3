"""The action's pure decisions (mode per event, the PR comment body and which comment is ours, outputs), the API
client's retries, and `bgdeploy ci` without a spec."""

from __future__ import annotations

import httpx
import pytest

from bgdeploy.errors import Problem, SpecError
from bgdeploy.github.comment import COMMENT_LIMIT, comment_body, marker, ours, spec_errors_markdown
from bgdeploy.github.modes import decide_mode
from bgdeploy.transports.github import Comment, GitHub, GitHubError


@pytest.mark.parametrize(
    ("requested", "event", "ref", "mode"),
    [
        ("auto", "pull_request", "refs/pull/7/merge", "offline-plan"),
        ("auto", "pull_request_target", "refs/heads/main", "offline-plan"),
        ("auto", "push", "refs/heads/main", "deploy"),
        ("auto", "push", "refs/heads/feature", "offline-plan"),
        ("auto", "workflow_dispatch", "refs/heads/main", "plan"),
        ("auto", "schedule", "refs/heads/main", "validate"),
        ("rollback", "workflow_dispatch", "refs/heads/main", "rollback"),
        ("preview", "pull_request", "refs/pull/7/merge", "preview"),
    ],
)
def test_auto_mode_follows_the_event(requested: str, event: str, ref: str, mode: str) -> None:
    assert decide_mode(requested, event, ref, "main").mode == mode


def test_a_pull_request_never_chooses_to_touch_the_host() -> None:
    """Only the workflow's mode input starts a live plan or a preview; nothing in a PR's spec is an input here."""
    for event in ("pull_request", "pull_request_target"):
        assert decide_mode("auto", event, "refs/pull/1/merge", "main").mode == "offline-plan"


def test_comment_body_starts_with_the_marker_and_fits_githubs_limit() -> None:
    body = comment_body("### report\n" + "| row |\n" * 20_000, "chat", "https://github.com/o/r/actions/runs/1")
    assert body.startswith(marker("chat") + "\n")
    assert len(body) <= COMMENT_LIMIT
    assert "truncated to fit GitHub's comment limit" in body
    assert body.rstrip().endswith("[workflow run](https://github.com/o/r/actions/runs/1)</sub>")


def test_truncation_never_leaves_a_code_fence_open() -> None:
    body = comment_body("head\n```text\n" + "log line\n" * 20_000, "chat", None)
    assert body.count("```") % 2 == 0


def test_spec_errors_are_listed_escaped() -> None:
    error = SpecError("bluegreen.yaml", [Problem("model.name", "bad <b>value</b> | @alice", 3, 9)])
    text = spec_errors_markdown(error, "chat")
    assert "| 3:9 | model.name | bad &lt;b&gt;value&lt;/b&gt; \\| @\u200dalice |" in text
    assert "nothing was changed" in text


def _client(handler: object, sleeps: list[float]) -> GitHub:
    return GitHub(
        "tok",
        "https://ghe.example/api/v3",
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
        sleep=sleeps.append,
    )


def test_retries_5xx_and_secondary_rate_limits_then_succeeds() -> None:
    answers = [
        httpx.Response(502, json={"message": "bad gateway"}),
        httpx.Response(403, headers={"retry-after": "3"}, json={"message": "You have exceeded a secondary rate limit"}),
        httpx.Response(200, json=[]),
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    sleeps: list[float] = []
    assert _client(handler, sleeps).pulls_for_commit("o/r", "abc") == []
    assert sleeps == [1.0, 3.0]
    assert str(seen[0].url) == "https://ghe.example/api/v3/repos/o/r/commits/abc/pulls"
    assert seen[0].headers["authorization"] == "Bearer tok"


def test_a_plain_403_is_not_retried_and_names_the_status() -> None:
    sleeps: list[float] = []
    client = _client(lambda r: httpx.Response(403, json={"message": "Resource not accessible by integration"}), sleeps)
    with pytest.raises(GitHubError) as info:
        client.create_comment("o/r", 1, "body")
    assert info.value.status == 403 and "Resource not accessible by integration" in str(info.value)
    assert sleeps == []
    assert "tok" not in str(info.value)


def test_list_comments_follows_pagination_and_keeps_the_author() -> None:
    user = {"login": "github-actions[bot]"}
    pages = {
        "1": (
            [{"id": i, "body": "other", "user": user} for i in range(100)],
            '<https://ghe.example/api/v3/x?page=2>; rel="next"',
        ),
        "2": ([{"id": 500, "body": f"{marker('chat')}\nold", "user": user}], ""),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        items, link = pages[request.url.params.get("page", "1")]
        return httpx.Response(200, json=items, headers={"link": link} if link else {})

    comments = _client(handler, []).list_comments("o/r", 7)
    assert len(comments) == 101
    found = ours(comments, "chat", "github-actions[bot]")
    assert found is not None and found.id == 500


def _comment(id_: int, body: str, author: str) -> Comment:
    return Comment(id_, body, author, f"https://x/{id_}")


def test_a_look_alike_comment_by_someone_else_is_never_ours() -> None:
    forged = _comment(1, f"{marker('chat')}\nplease approve", "mallory")
    quoted = _comment(2, f"the report said:\n{marker('chat')}", "github-actions[bot]")
    other_deployment = _comment(3, f"{marker('chat-v2')}\nreport", "github-actions[bot]")
    assert ours([forged, quoted, other_deployment], "chat", "github-actions[bot]") is None
    mine = _comment(4, f"{marker('chat')}\nreport", "github-actions[bot]")
    assert ours([forged, mine], "chat", "github-actions[bot]") == mine
    assert ours([forged, mine], "chat", "a-pat-user") is None


def test_ci_with_a_missing_spec_file_says_so_and_sets_outcome_invalid(tmp_path: object) -> None:
    from pathlib import Path

    from bgdeploy.github.action import Runner

    assert isinstance(tmp_path, Path)
    output = tmp_path / "output"
    output.write_text("")
    lines: list[str] = []
    env = {"BGDEPLOY_SPEC": str(tmp_path / "nope.yaml"), "GITHUB_OUTPUT": str(output), "GITHUB_ACTIONS": "true"}
    assert Runner(env, lines.append).run() == 2
    assert any(line.startswith("::error title=bgdeploy::") and "no such file" in line for line in lines)
    assert "outcome<<" in output.read_text() and "\ninvalid\n" in output.read_text()


class _FakeGitHub:
    """A GitHubApi whose deployments cannot be read (a token without deployments: read) and that records comments."""

    def __init__(self) -> None:
        self.comments: list[Comment] = []

    def list_comments(self, repo: str, number: int) -> list[Comment]:
        return list(self.comments)

    def create_comment(self, repo: str, number: int, body: str) -> Comment:
        comment = Comment(len(self.comments) + 1, body, "github-actions[bot]", "https://x")
        self.comments.append(comment)
        return comment

    def update_comment(self, repo: str, comment_id: int, body: str) -> Comment:
        raise AssertionError("no comment of ours exists yet")

    def authenticated_login(self) -> str | None:
        return None

    def pulls_for_commit(self, repo: str, sha: str) -> list[object]:
        return []

    def last_successful_deployment(self, repo: str, environment: str, **_: object) -> None:
        raise GitHubError("GitHub API GET /repos/o/r/deployments: HTTP 403: Resource not accessible", 403)

    def close(self) -> None:
        pass


def test_an_offline_plan_says_when_the_deployments_could_not_be_read(tmp_path: object) -> None:
    import json
    from pathlib import Path

    from bgdeploy.github.action import Runner
    from tests.unit.conftest import MINIMAL

    assert isinstance(tmp_path, Path)
    spec = tmp_path / "bluegreen.yaml"
    spec.write_text(MINIMAL)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    env = {
        "BGDEPLOY_SPEC": str(spec),
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_TOKEN": "ghs_" + "x" * 36,
        "RUNNER_TEMP": str(tmp_path),
    }
    fake = _FakeGitHub()
    lines: list[str] = []
    assert Runner(env, lines.append, github=fake).run() == 0  # type: ignore[arg-type]
    (comment,) = fake.comments
    assert "could not be read" in comment.body and "No earlier successful deployment" in comment.body
    assert "The host was not contacted" in comment.body
    assert any(line.startswith("::warning title=bgdeploy::could not read the last deployment") for line in lines)


def test_the_comment_author_is_the_tokens_identity() -> None:
    from bgdeploy.github.action import Runner

    def user(status: int, login: str = "") -> GitHub:
        body = {"login": login} if status == 200 else {"message": "Resource not accessible by integration"}
        return _client(lambda r: httpx.Response(status, json=body), [])

    assert user(200, "release-bot").authenticated_login() == "release-bot"
    assert user(403).authenticated_login() is None
    pat = Runner({"GITHUB_TOKEN": "ghp_" + "x" * 36})
    assert pat.comment_author(user(200, "release-bot")) == "release-bot"
    actions = Runner({"GITHUB_TOKEN": "ghs_" + "x" * 36})
    assert actions.comment_author(user(200, "someone")) == "github-actions[bot]"  # no GET /user for it
    named = Runner({"GITHUB_TOKEN": "ghp_" + "x" * 36, "BGDEPLOY_COMMENT_AUTHOR": "our-app[bot]"})
    assert named.comment_author(user(403)) == "our-app[bot]"
