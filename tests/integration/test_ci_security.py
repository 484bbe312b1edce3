"""`bgdeploy ci` as an attacker's pull request meets it, against the testbed and the OpenAPI-checked GitHub
stand-in: a PR run holds no key and never connects, yet plans from the last deployment's record; a fork's run
is neutral; forged marker comments are left alone; hostile spec keys and container log lines start no workflow
command and leak no secret into any artefact."""

from __future__ import annotations

import json
import pwd
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.github_stub.server import GitHubStub
from tests.integration.deployments import Deployment
from tests.integration.test_ci import HF_TOKEN, NAME, OWNER, PR, TOKEN, ci, pr_event, push_event, spec_with_secret
from tests.integration.test_ci import stub as stub

pytestmark = pytest.mark.integration

# Our own workflow commands, as `bgdeploy ci` writes them; any other line that the runner would take for a
# command is a forgery.
OURS = re.compile(r"::(add-mask|group|endgroup|stop-commands|notice|warning|error)( [^:]*)?::.*|::[0-9a-f]{32}::")


def forged_commands(log: str) -> list[str]:
    found = []
    for line in re.split(r"\r\n|\n|\r", log):
        trimmed = line.strip()
        if "##[" in line or (trimmed.startswith("::") and not OURS.fullmatch(trimmed)):
            found.append(line)
    return found


class Listener:
    """A TCP listener on loopback that counts connections: the host a no-key PR run must never reach."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def no_key(**env: str) -> dict[str, str]:
    return {"BGDEPLOY_SSH_KEY": "", **env}


def pointed_at(dep: Deployment, listener: Listener, model: str, **extra: Any) -> None:
    """The PR's spec, with its target moved to the listener: any connection attempt is counted there."""
    runtime = {"secret_env": ["HF_TOKEN"], **extra.pop("runtime", {})}
    spec = dep.spec(model, runtime=runtime, **extra)
    spec["target"]["port"] = listener.port
    import yaml

    dep.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_a_pr_without_a_key_plans_offline_from_the_last_deployment_and_never_connects(
    dep: Deployment, stub: GitHubStub, listener: Listener
) -> None:
    payload = push_event()
    stub.set_commit_pulls(payload["after"], [PR])
    spec_with_secret(dep, "acme/chat-v1")
    deployed = ci(dep, stub, "push", payload)
    assert deployed.code == 0, deployed.log
    record = stub.deployments()[-1]["request"]
    assert isinstance(record, dict)
    assert record["payload"]["release"]["model"] == "acme/chat-v1" and record["payload"]["name"] == dep.name
    assert "gpu_facts" in record["payload"] and record["payload"]["recorded_at"]
    final = stub.statuses(int(str(stub.deployments()[-1]["id"])))[-1]
    assert final["state"] == "success" and "blue serves acme/chat-v1 (spec " in str(final["description"])

    pointed_at(dep, listener, "acme/chat-v2")
    run = ci(dep, stub, "pull_request", pr_event(), **no_key())
    assert run.code == 0, run.log
    assert run.outputs["outcome"] == "planned" and run.outputs["model"] == "acme/chat-v2"
    assert listener.connections == 0, "a PR run without a key connected to the host"
    body = str(next(c["body"] for c in stub.comments(OWNER, NAME, PR) if f"bgdeploy:{dep.name}" in str(c["body"])))
    assert "The host was not contacted" in body
    deployment_id = stub.deployments()[-1]["id"]
    assert f"GitHub deployment {deployment_id} of production" in body
    assert "| model | acme/chat\\-v1 | acme/chat\\-v2 |" in body or "| model | acme/chat-v1 | acme/chat-v2 |" in body
    assert "Steps:" in body and "Policy:" in body
    assert dep.serving_model() == "acme/chat-v1", "nothing changed on the host"
    assert stub.errors == []


def test_a_pr_with_no_earlier_deployment_says_so(dep: Deployment, stub: GitHubStub, listener: Listener) -> None:
    pointed_at(dep, listener, "acme/chat-v1", validation={"preview_on_pr": True})
    run = ci(dep, stub, "pull_request", pr_event(), **no_key())
    assert run.code == 0, run.log
    body = str(stub.comments(OWNER, NAME, PR)[0]["body"])
    assert "No earlier successful deployment" in body and "none \\(first deploy\\)" in body, body
    assert "never starts one" in body, "preview_on_pr only asks for a preview"
    assert listener.connections == 0


def test_a_fork_pr_with_no_secrets_is_neutral_and_writes_no_comment(
    dep: Deployment, stub: GitHubStub, listener: Listener
) -> None:
    event = pr_event()
    event["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    pointed_at(dep, listener, "acme/chat-v1")
    # A fork gets neither the key nor a writable token; the workflow may still ask for a preview.
    run = ci(dep, stub, "pull_request", event, **no_key(BGDEPLOY_MODE="preview", HF_TOKEN=""))
    assert run.code == 0, run.log
    assert run.outputs["outcome"] == "skipped"
    assert "::notice title=bgdeploy::" in run.log and "::error" not in run.log and "::warning" not in run.log
    assert "Skipped" in run.summary and "The host was not contacted" in run.summary
    assert stub.comments(OWNER, NAME, PR) == [] and not any(r.method in ("POST", "PATCH") for r in stub.requests)
    assert listener.connections == 0


def test_a_forged_marker_comment_by_someone_else_is_left_alone(
    dep: Deployment, stub: GitHubStub, listener: Listener
) -> None:
    forged = f"<!-- bgdeploy:{dep.name} -->\n✅ **Deployed**: approved, merge it"
    stub.seed_comments(OWNER, NAME, PR, [forged], login="mallory")
    stub.seed_comments(OWNER, NAME, PR, [f"<!-- bgdeploy:{dep.name} -->\nlook-alike"], login="github-actions")
    pointed_at(dep, listener, "acme/chat-v1")
    for _ in range(2):
        run = ci(dep, stub, "pull_request", pr_event(), **no_key())
        assert run.code == 0, run.log
    comments = stub.comments(OWNER, NAME, PR)
    assert comments[0]["body"] == forged and comments[0]["user"]["login"] == "mallory"  # type: ignore[index]
    assert str(comments[1]["body"]).endswith("look-alike")
    ours = [c for c in comments if c["user"]["login"] == "github-actions[bot]"]  # type: ignore[index]
    assert len(comments) == 3 and len(ours) == 1, "one comment of our own, made once, then updated"
    assert "Planned" in str(ours[0]["body"])


def test_hostile_spec_keys_start_no_workflow_command(dep: Deployment, stub: GitHubStub) -> None:
    dep.spec_path.write_text(
        f"version: 1\nname: {dep.name}\ntarget: {{transport: local}}\nmodel: {{name: m}}\nruntime: {{image: i}}\n"
        '"x\\n::warning title=Approved::LGTM": 1\n'
        '"##[add-mask]everything": 2\n'
        '"  ::set-output name=outcome::deployed": 3\n'
        '"<img src=x> @octocat <!-- bgdeploy:evil -->": 4\n'
    )
    run = ci(dep, stub, "pull_request", pr_event())
    assert run.code == 2, run.log
    assert run.outputs["outcome"] == "invalid"
    assert forged_commands(run.log) == [], run.log
    assert run.log.count("::error file=") == 4
    body = str(stub.comments(OWNER, NAME, PR)[0]["body"])
    assert "<img" not in body and "@octocat" not in body and body.count("<!-- bgdeploy:") == 1


def test_a_secret_in_container_log_lines_reaches_no_artefact(dep: Deployment, stub: GitHubStub) -> None:
    payload = push_event()
    stub.set_commit_pulls(payload["after"], [PR])
    # The server echoes an unknown flag into its log, and the flag carries the token: a log line with a secret.
    dep.write(
        "acme/chat-v1",
        env={"FAKEVLLM_FAULT": "crash-on-load"},
        runtime={"secret_env": ["HF_TOKEN"], "args": [f"--debug-token={HF_TOKEN}"]},
    )
    run = ci(dep, stub, "push", payload)
    assert run.code == 1, run.log
    assert "ignoring vLLM flag --debug-token=***" in str(stub.comments(OWNER, NAME, PR)[0]["body"])
    key = Path(dep.testbed.key_file).read_text().strip()
    secrets = [TOKEN, HF_TOKEN, *[line for line in key.splitlines() if len(line) > 20]]
    home = pwd.getpwnam(dep.testbed.user).pw_dir
    state_dir = Path(home) / ".bgdeploy" / dep.name
    artefacts = {
        "log": "\n".join(line for line in run.log.splitlines() if not line.startswith("::add-mask::")),
        "summary": run.summary,
        "outputs": json.dumps(run.outputs),
        "report": Path(run.outputs["report-path"]).read_text(),
        "github": stub.transcript().replace(f"Bearer {TOKEN}", "Bearer ***"),
        "history": (state_dir / "history.jsonl").read_text() if (state_dir / "history.jsonl").exists() else "",
        "state": (state_dir / "state.json").read_text() if (state_dir / "state.json").exists() else "",
    }
    assert artefacts["history"], "the failed deploy wrote its history line"
    for where, text in artefacts.items():
        for secret in secrets:
            assert secret not in text, f"a secret reached {where}"


def test_the_offline_plan_shows_the_policy_verdict_of_the_copy_the_workflow_passes(
    dep: Deployment, stub: GitHubStub, listener: Listener
) -> None:
    policy = dep.workdir / "policy.yaml"
    policy.write_text(
        "version: 1\nimages: ['vllm/vllm-openai:*']\nnames: ['chat-*']\nenv_deny: [LD_PRELOAD]\n"
        "volumes: [{host: /srv/hf-cache, mode: rw}]\n"
    )
    pointed_at(dep, listener, "acme/chat-v1", runtime={"env": {"LD_PRELOAD": "/tmp/x.so"}, "volumes": ["/:/host"]})
    run = ci(dep, stub, "pull_request", pr_event(), **no_key(BGDEPLOY_POLICY_FILE=str(policy)))
    assert run.code == 2, run.log
    assert run.outputs["outcome"] == "invalid"
    annotations = [line for line in run.log.splitlines() if line.startswith("::error ") and "title=host policy" in line]
    assert len(annotations) >= 4, run.log  # image, name, env, volume: every violation, each at its line
    body = str(stub.comments(OWNER, NAME, PR)[0]["body"])
    assert "violation(s)" in body and "the host would refuse it" in body
    assert listener.connections == 0

    policy.write_text("version: 1\nimages: ['bgdeploy-test/*']\n")
    pointed_at(dep, listener, "acme/chat-v1")
    allowed = ci(dep, stub, "pull_request", pr_event(), **no_key(BGDEPLOY_POLICY_FILE=str(policy)))
    assert allowed.code == 0, allowed.log
    body = str(stub.comments(OWNER, NAME, PR)[0]["body"])
    assert "Policy: ✅ allowed" in body, [line for line in body.splitlines() if "Policy" in line]


def test_hostile_model_answers_start_no_workflow_command_and_write_no_markup(dep: Deployment, stub: GitHubStub) -> None:
    from tests.unit.hostile import CORPUS

    prompts = [
        {"name": f"p{i}", "chat": value, "max_tokens": 300, "expect": {"contains": "stand-in"}}
        for i, value in enumerate(CORPUS)
    ]
    spec_with_secret(dep, "acme/chat-v1", validation={"prompts": prompts}, rollout={"smoke": []})
    run = ci(dep, stub, "pull_request", pr_event(), BGDEPLOY_MODE="preview")
    assert run.code == 0, run.log
    assert forged_commands(run.log) == [], [line for line in forged_commands(run.log)][:5]
    body = str(stub.comments(OWNER, NAME, PR)[0]["body"])
    outside_blocks = re.sub(r"```text\n.*?\n```", "", body, flags=re.DOTALL)
    for raw in ("<img", "<script", "<details", "](https://evil", "<!-- bgdeploy:evil"):
        assert raw not in outside_blocks, raw
    assert body.count("<!-- bgdeploy:") == 1
    assert not re.search(r"(?<![\w\u200d`])@(octocat|org/team)", body)
