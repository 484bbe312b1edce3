"""The GitHub Action's work on a fleet (`bgdeploy ci` with target.hosts): plan, deploy or roll back every host,
then the report (one row per host) in the job summary and the PR comment, one GitHub Deployment naming the
hosts, and the outputs, with hosts-deployed and hosts-failed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from bgdeploy.errors import EXIT_DEPLOY_FAILED, EXIT_OK, BgdeployError
from bgdeploy.fleet.members import members
from bgdeploy.fleet.report import render_fleet
from bgdeploy.fleet.result import FleetResult
from bgdeploy.fleet.runner import (
    FleetBlocked,
    deploy_fleet,
    lock_all,
    open_fleet,
    plan_fleet,
    release_all,
    rollback_fleet,
)
from bgdeploy.github import workflow_commands as wc
from bgdeploy.spec.load import LoadedSpec

if TYPE_CHECKING:
    from bgdeploy.github.action import Runner

FAILED = ("failed", "partial", "blocked")


def run_fleet_mode(runner: Runner, loaded: LoadedSpec, mode: str) -> int:
    from bgdeploy.github.action import outputs

    spec = loaded.spec
    if mode not in ("plan", "deploy", "rollback"):
        raise BgdeployError(f"mode {mode} works on one host at a time, and this spec is a fleet (target.hosts)")
    environment = runner.environment(loaded)
    chosen = members(spec)
    labels = ", ".join(m.label for m in chosen)
    deployment_id: int | None = None
    if mode != "plan":
        deployment_id = runner.try_github(
            "create a GitHub deployment",
            lambda gh: gh.create_deployment(
                runner.ctx.repo,
                runner.ctx.sha or runner.ctx.get("GITHUB_REF"),
                environment,
                {"bgdeploy": {"name": spec.name, "model": spec.model.name, "hosts": [m.label for m in chosen]}},
                f"bgdeploy {mode}: {spec.model.name} on {labels}"[:140],
            ),
        )
        runner.status(deployment_id, "in_progress", f"{mode} of {spec.model.name} on {labels}"[:140], environment)
    runner.say(f"bgdeploy: {mode} of {spec.name} on the fleet: {labels}")
    result = FleetResult(command=mode, name=spec.name)
    code = EXIT_OK
    try:
        with open_fleet(loaded, chosen, mode, stream=sys.stdout) as fleet:
            result = fleet.result
            if mode == "plan":
                plan_fleet(fleet)
            else:
                lock_all(fleet, lock_wait=600, unlock=False)
                try:
                    deploy_fleet(fleet) if mode == "deploy" else rollback_fleet(fleet)
                finally:
                    release_all(fleet)
    except FleetBlocked as blocked:
        result = blocked.fleet.result
    except KeyboardInterrupt:
        result.outcome = "failed"
        result.failure = "interrupted: the job was cancelled; hosts in flight rolled back, the next run converges"
        code = EXIT_DEPLOY_FAILED
    markdown = render_fleet(result)
    runner.log.group("bgdeploy report")
    runner.log.untrusted_block(markdown)
    runner.log.endgroup()
    runner.write_report(markdown)
    if result.outcome in FAILED:
        code = EXIT_DEPLOY_FAILED
    if deployment_id is not None:
        state = "failure" if result.outcome in FAILED else "success"
        runner.status(deployment_id, state, result.failure or f"{result.outcome} on {labels}", environment)
    if spec.report.pr_comment:
        runner.comment(spec.name, markdown, mode)
    runner.set_outputs(
        {
            **outputs(None, result.outcome, runner.report_path, deployment_id),
            "model": spec.model.name,
            "hosts-deployed": ",".join(result.hosts_deployed),
            "hosts-failed": ",".join(result.hosts_failed),
        }
    )
    if code != EXIT_OK:
        runner.log.command(wc.error(result.failure or "the fleet deploy failed", title="bgdeploy"))
    return code
