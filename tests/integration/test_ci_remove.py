"""The action's `mode: remove` (a temporary preview deployment taken down): the host is cleaned, the
environment's GitHub Deployment is set inactive, and a second run is a no-op."""

from __future__ import annotations

import pytest

from tests.github_stub.server import GitHubStub
from tests.integration.deployments import Deployment
from tests.integration.test_ci import PR, ci, push_event, spec_with_secret, stub
from tests.integration.test_remove import leftovers_of

pytestmark = pytest.mark.integration
__all__ = ["stub"]  # the fixture, used by name


def test_mode_remove_takes_the_deployment_down_and_sets_its_deployment_inactive(
    dep: Deployment, stub: GitHubStub
) -> None:
    payload = push_event()
    stub.set_commit_pulls(payload["after"], [PR])
    spec_with_secret(dep, "acme/chat-v1")
    deployed = ci(dep, stub, "push", payload)
    assert deployed.code == 0 and deployed.outputs["outcome"] == "deployed", deployed.log
    (deployment,) = stub.deployments()
    deployment_id = int(str(deployment["id"]))

    removed = ci(dep, stub, "push", payload, BGDEPLOY_MODE="remove")
    assert removed.code == 0, removed.log
    assert removed.outputs["outcome"] == "removed", removed.outputs
    assert leftovers_of(dep) == {}
    assert [s["state"] for s in stub.statuses(deployment_id)] == ["in_progress", "success", "inactive"]
    assert len(stub.deployments()) == 1, "a removal creates no deployment of its own"
    assert "remove" in removed.summary.lower()

    again = ci(dep, stub, "push", payload, BGDEPLOY_MODE="remove")
    assert again.code == 0 and again.outputs["outcome"] == "unchanged", again.log
    assert stub.errors == []


def test_outputs_spell_colour_one_way_keep_the_old_names_and_give_the_url(dep: Deployment, stub: GitHubStub) -> None:
    payload = push_event()
    stub.set_commit_pulls(payload["after"], [PR])
    url = f"https://chat.example.com/{dep.name}"
    dep.write("acme/chat-v1", runtime={"secret_env": ["HF_TOKEN"]}, report={"url": url})
    run = ci(dep, stub, "push", payload)
    assert run.code == 0, run.log
    assert run.outputs["active-colour"] == run.outputs["active-color"] == "blue", run.outputs
    assert run.outputs["url"] == url
    (deployment,) = stub.deployments()
    statuses = stub.statuses(int(str(deployment["id"])))
    assert [s.get("environment_url") for s in statuses] == [url, url], statuses
    assert stub.errors == []
