"""`bgdeploy ci` (the GitHub Action's work) against the testbed and a GitHub API stand-in that checks every
request against GitHub's OpenAPI description, fed with real webhook payloads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.github_stub.events import event_payload, examples_available, write_event
from tests.github_stub.server import GitHubStub, openapi_available
from tests.integration.conftest import REPO_ROOT, unavailable
from tests.integration.deployments import Deployment

pytestmark = pytest.mark.integration

REPO = "Codertocat/Hello-World"
OWNER, NAME = REPO.split("/")
PR = 2
TOKEN = "ghs_" + "T0k3n" * 7
HF_TOKEN = "hf_" + "s3cr3t" * 6
HOSTILE = (
    "Ignore the table | break it <script>alert(1)</script> @octocat <!-- bgdeploy:evil --> ``` "
    "::error::forged ::set-output name=x::y"
)


@pytest.fixture
def stub() -> Iterator[GitHubStub]:
    if not (openapi_available() and examples_available()):
        unavailable("the npm packages are missing: run scripts/setup-node")
    with GitHubStub(prefix="/api/v3", token=TOKEN) as server:
        yield server


@dataclass
class Run:
    code: int
    log: str
    summary: str
    outputs: dict[str, str]


def parse_outputs(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for match in re.finditer(r"^([\w-]+)<<(\S+)\n(.*?)\n\2$", text, re.MULTILINE | re.DOTALL):
        values[match.group(1)] = match.group(3)
    return values


def ci(dep: Deployment, stub: GitHubStub, event: str, payload: dict[str, Any], **env: str) -> Run:
    work = dep.workdir
    summary, output = work / "summary.md", work / "output.txt"
    summary.write_text("")
    output.write_text("")
    key = Path(dep.testbed.key_file).read_text()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "BGDEPLOY_"))},
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": stub.url,
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_RUN_ID": "4242",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(write_event(work, payload)),
        "GITHUB_SHA": str(payload.get("after") or payload.get("pull_request", {}).get("head", {}).get("sha", "")),
        "GITHUB_REF": str(payload.get("ref") or f"refs/pull/{PR}/merge"),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(work),
        "BGDEPLOY_SPEC": str(dep.spec_path),
        "BGDEPLOY_SSH_KEY": key,
        "BGDEPLOY_GITHUB_TOKEN": TOKEN,
        "HF_TOKEN": HF_TOKEN,
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bgdeploy", "ci"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        check=False,
    )
    return Run(done.returncode, done.stdout + done.stderr, summary.read_text(), parse_outputs(output.read_text()))


def pr_event() -> dict[str, Any]:
    return event_payload("pull_request", "opened")


def push_event() -> dict[str, Any]:
    return event_payload("push")


def spec_with_secret(dep: Deployment, model: str, env: dict[str, str] | None = None, **extra: Any) -> None:
    """A spec whose server receives HF_TOKEN from the runner's environment (a secret that must never leak)."""
    dep.write(model, env=env, runtime={"secret_env": ["HF_TOKEN"]}, **extra)


def test_a_pr_run_plans_and_keeps_one_comment_even_beyond_the_first_page(dep: Deployment, stub: GitHubStub) -> None:
    spec_with_secret(dep, "acme/chat-v1")
    stub.seed_comments(OWNER, NAME, PR, [f"chatter {i}" for i in range(250)])
    first = ci(dep, stub, "pull_request", pr_event())
    assert first.code == 0, first.log
    assert first.outputs["outcome"] == "planned"
    comments = stub.comments(OWNER, NAME, PR)
    ours = [c for c in comments if f"<!-- bgdeploy:{dep.name} -->" in str(c["body"])]
    assert len(comments) == 251 and len(ours) == 1
    assert "📝 **Planned**" in str(ours[0]["body"])
    assert "The host was not contacted" in str(ours[0]["body"]), "auto on a pull request plans offline"
    assert "::group::bgdeploy report" in first.log and "::endgroup::" in first.log

    second = ci(dep, stub, "pull_request", pr_event())
    assert second.code == 0, second.log
    comments = stub.comments(OWNER, NAME, PR)
    assert len(comments) == 251, "the second run updates the comment (page 3), it does not add one"
    assert any(r.method == "PATCH" for r in stub.requests)
    assert stub.errors == []


def test_a_push_deploys_reports_on_the_merged_pr_and_creates_deployments(dep: Deployment, stub: GitHubStub) -> None:
    payload = push_event()
    stub.set_commit_pulls(payload["after"], [PR])
    spec_with_secret(dep, "acme/chat-v1")
    first = ci(dep, stub, "push", payload)
    assert first.code == 0, first.log
    assert first.outputs["outcome"] == "deployed" and first.outputs["active-color"] == "blue"
    assert dep.serving_model() == "acme/chat-v1"

    spec_with_secret(dep, "acme/chat-v2")
    second = ci(dep, stub, "push", payload)
    assert second.code == 0, second.log
    assert second.outputs["outcome"] == "deployed" and second.outputs["previous-color"] == "blue"
    assert second.outputs["model"] == "acme/chat-v2"
    assert "✅ **Deployed**: green now serves acme/chat-v2" in second.summary

    deployments = stub.deployments()
    assert len(deployments) == 2
    sent = deployments[0]["request"]
    assert isinstance(sent, dict)
    assert sent["auto_merge"] is False and sent["required_contexts"] == [] and sent["environment"] == "production"
    assert sent["payload"]["model"] == "acme/chat-v1" and sent["payload"]["colour"] == "blue"
    first_id, second_id = (int(str(d["id"])) for d in deployments)
    assert [s["state"] for s in stub.statuses(second_id)] == ["in_progress", "success"]
    assert [s["state"] for s in stub.statuses(first_id)] == ["in_progress", "success", "inactive"]
    assert all(
        s["log_url"] == "https://github.example/Codertocat/Hello-World/actions/runs/4242"
        for s in stub.statuses(second_id)
    )
    assert second.outputs["deployment-id"] == str(second_id)

    bodies = [str(c["body"]) for c in stub.comments(OWNER, NAME, PR)]
    assert len(bodies) == 1 and "green now serves acme/chat-v2" in bodies[0]
    assert stub.errors == []


def test_a_failed_deploy_reports_failure_everywhere_and_blue_keeps_serving(dep: Deployment, stub: GitHubStub) -> None:
    payload = push_event()
    stub.set_commit_pulls(payload["after"], [PR])
    spec_with_secret(dep, "acme/chat-v1")
    assert ci(dep, stub, "push", payload).code == 0
    spec_with_secret(dep, "acme/chat-v2", env={"FAKEVLLM_FAULT": "crash-on-load"})
    run = ci(dep, stub, "push", payload)
    assert run.code == 1, run.log
    assert run.outputs["outcome"] == "failed" and run.outputs["active-color"] == "blue"
    latest = stub.deployments()[-1]
    assert stub.statuses(int(str(latest["id"])))[-1]["state"] == "failure"
    body = str(stub.comments(OWNER, NAME, PR)[0]["body"])
    assert "❌ **Deploy failed**: blue still serves" in body and "Last log lines of the failed container" in body
    assert dep.serving_model() == "acme/chat-v1"


def test_an_invalid_spec_gives_annotations_and_a_comment_listing_the_errors(dep: Deployment, stub: GitHubStub) -> None:
    dep.spec_path.write_text(
        f"version: 1\nname: {dep.name}\ntarget: {{transport: local}}\nmodel: {{name: m}}\n"
        "runtime: {image: i, port: 99999}\nhelth: {}\n"
    )
    run = ci(dep, stub, "pull_request", pr_event())
    assert run.code == 2
    annotations = [line for line in run.log.splitlines() if line.startswith("::error ")]
    assert any(
        a.startswith(
            f"::error file={dep.spec_path},line=5,col=27,title=bluegreen.yaml::runtime.port: must be from 1 to 65535"
        )
        for a in annotations
    ), annotations
    assert any(
        a.startswith(f"::error file={dep.spec_path},line=6,col=1,title=bluegreen.yaml::helth: unknown key")
        for a in annotations
    ), annotations
    assert run.outputs["outcome"] == "invalid"
    body = str(stub.comments(OWNER, NAME, PR)[0]["body"])
    assert body.startswith(f"<!-- bgdeploy:{dep.name} -->") and "⚠️ **Invalid spec**: 2 problem(s)" in body
    assert "| 6:1 | helth | unknown key" in body and "did you mean" in body
    assert "Invalid spec" in run.summary


def test_hostile_model_output_stays_inert_and_no_secret_leaks(dep: Deployment, stub: GitHubStub) -> None:
    prompts = [{"name": "echo", "chat": HOSTILE, "max_tokens": 500, "expect": {"contains": "stand-in"}}]
    spec_with_secret(dep, "acme/chat-v1", validation={"prompts": prompts}, rollout={"smoke": []})
    # A preview runs only when the workflow asks for it (a job behind its own environment that holds the key).
    run = ci(dep, stub, "pull_request", pr_event(), BGDEPLOY_MODE="preview")
    assert run.code == 0, run.log
    assert run.outputs["outcome"] == "previewed"
    assert dep.container_status("blue") == "absent", "a preview never stays"

    body = str(stub.comments(OWNER, NAME, PR)[0]["body"])
    assert body.count("<!-- bgdeploy:") == 1, "the model cannot forge a second marker"
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert "@octocat" not in body and "@\u200docto" in body
    assert "You said" in body
    echo_rows = [line for line in body.splitlines() if line.startswith("| echo |")]
    assert len(echo_rows) == 1 and len(re.split(r"(?<!\\)\|", echo_rows[0])) == 6, "the table row is intact"

    # In the log, model output sits between ::stop-commands::TOKEN and ::TOKEN::, so it cannot act.
    match = re.search(r"::stop-commands::(\w+)\n(.*?)\n::\1::", run.log, re.DOTALL)
    assert match is not None and "You said" in match.group(2)
    outside = run.log.replace(match.group(0), "")
    assert "::error::forged" not in outside

    key = Path(dep.testbed.key_file).read_text().strip()
    masked = "\n".join(line for line in run.log.splitlines() if not line.startswith("::add-mask::"))
    for secret in (TOKEN, HF_TOKEN, *[line for line in key.splitlines() if len(line) > 20]):
        assert secret not in masked, "a secret reached the log outside ::add-mask::"
        assert secret not in run.summary and secret not in str(run.outputs)
        assert secret not in stub.transcript().replace(f"Bearer {TOKEN}", "Bearer ***")
    assert f"::add-mask::{TOKEN}" in run.log and f"::add-mask::{HF_TOKEN}" in run.log


def test_github_trouble_never_fails_or_undoes_a_deploy(dep: Deployment, stub: GitHubStub) -> None:
    payload = push_event()
    stub.set_commit_pulls(payload["after"], [PR])
    stub.fail("*", r"/issues/", 403, times=None, body={"message": "Resource not accessible by integration"})
    stub.fail("*", r"/deployments", 502, times=None)
    spec_with_secret(dep, "acme/chat-v1")
    run = ci(dep, stub, "push", payload)
    assert run.code == 0, run.log
    assert run.outputs["outcome"] == "deployed"
    assert "::warning title=bgdeploy::could not comment on pull request #2" in run.log
    assert "read-only token" in run.log and "could not create a GitHub deployment" in run.log
    assert dep.serving_model() == "acme/chat-v1"
