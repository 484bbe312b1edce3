"""The workflows users copy and call keep the key away from pull requests, and the action's install is pinned."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted([*ROOT.glob(".github/workflows/*.yml"), *ROOT.glob("examples/workflows/*.yml")])


def jobs(path: Path) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    found: dict[str, dict[str, Any]] = data.get("jobs", {})
    return found


def text(job: dict[str, Any]) -> str:
    return yaml.safe_dump(job)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_only_jobs_behind_an_environment_read_the_key_or_the_hf_token(path: Path) -> None:
    for name, job in jobs(path).items():
        if re.search(r"secrets\.(BGDEPLOY_SSH_KEY|HF_TOKEN)", text(job)):
            assert job.get("environment"), f"{path.name}: job {name} reads a secret without an environment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_host_jobs_are_never_cancelled_and_never_share_a_group_with_pr_runs(path: Path) -> None:
    groups: dict[str, bool] = {}
    for name, job in jobs(path).items():
        if "concurrency" not in job:
            continue
        group, cancel = job["concurrency"]["group"], job["concurrency"]["cancel-in-progress"]
        if "environment" in job and "preview" not in str(job["environment"]):
            assert cancel is False, f"{path.name}: job {name} may cancel a deploy"
        groups[group] = cancel
    pr = [g for g in groups if "-pr-" in g]
    host = [g for g in groups if "-host-" in g]
    assert not set(pr) & set(host)


def test_the_reusable_workflow_gates_host_jobs_by_a_job_level_environment() -> None:
    found = jobs(ROOT / ".github/workflows/bluegreen.yml")
    assert "environment" not in found["offline"] and "secrets." not in text(found["offline"])
    assert "inputs.preview-environment" in found["host"]["environment"]
    assert found["host"]["concurrency"]["cancel-in-progress"] is False
    assert found["offline"]["concurrency"]["group"] != found["host"]["concurrency"]["group"]


def test_the_pr_example_plans_offline_without_any_secret() -> None:
    found = jobs(ROOT / "examples/workflows/pr-validate.yml")
    assert "secrets." not in text(found["plan"]) and "environment" not in found["plan"]
    assert found["preview"]["environment"] == "gpu-preview"


def test_the_action_installs_pinned_hashes_and_execs_bgdeploy() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    scripts = "\n".join(step.get("run", "") for step in action["runs"]["steps"])
    assert "--require-hashes" in scripts and "requirements.lock" in scripts
    assert re.search(r"^\s*exec \S+bgdeploy\" ci$", scripts, re.M), "a cancelled job must signal bgdeploy itself"


def test_the_lock_file_matches_pyproject_and_pins_every_package_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    lock = (ROOT / "requirements.lock").read_text()
    assert "# Inputs: " + "; ".join(wanted) in lock, "requirements.lock is stale: run scripts/lock-requirements"
    entries = re.split(r"\n(?=[a-z0-9])", lock.split("\n", 3)[3].strip())
    assert len(entries) > 10
    for entry in entries:
        assert re.match(r"^[a-z0-9-]+==[\w.]+( ;[^\\]+)? \\\n", entry), entry
        assert "--hash=sha256:" in entry
