"""`bgdeploy ci`: the GitHub Action's work. Reads the action's inputs and GitHub's variables from the
environment, runs validate / plan / preview / deploy / rollback, and reports: job summary, step outputs,
`::error` annotations, the pull request comment and GitHub Deployments.

Reporting never fails or undoes a deploy: a GitHub error (a read-only token on a fork's PR, an outage)
becomes a warning. Secrets are masked with `::add-mask::` before anything else is printed, and model
output only reaches the log inside `::stop-commands::`, so it can never act as a workflow command.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgdeploy.errors import (
    EXIT_DEPLOY_FAILED,
    EXIT_INTERNAL,
    EXIT_INVALID,
    EXIT_OK,
    BgdeployError,
    SpecError,
    UsageError,
)
from bgdeploy.plan.github_report import MODES, comment_body, decide_mode, marker, outputs, spec_errors_markdown
from bgdeploy.plan.report import render
from bgdeploy.plan.result import Result
from bgdeploy.plan.state import Release
from bgdeploy.spec.load import LoadedSpec, load_spec
from bgdeploy.spec.models import NAME_PATTERN
from bgdeploy.workflow_commands import error as error_annotation

# Modes that change what serves: they get a GitHub deployment and report on the merged pull request.
DEPLOYING = ("deploy", "rollback", "promote", "promote-full", "abort")


@dataclass
class Context:
    """The GitHub run, from the environment a runner sets."""

    env: Mapping[str, str]
    event: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Context:
        event: dict[str, Any] = {}
        path = env.get("GITHUB_EVENT_PATH")
        if path and Path(path).is_file():
            try:
                loaded = json.loads(Path(path).read_text())
                event = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                event = {}
        return cls(env, event)

    def get(self, name: str, default: str = "") -> str:
        return self.env.get(name, default) or default

    @property
    def repo(self) -> str:
        return self.get("GITHUB_REPOSITORY")

    @property
    def token(self) -> str:
        return self.get("BGDEPLOY_GITHUB_TOKEN") or self.get("GITHUB_TOKEN")

    @property
    def run_url(self) -> str | None:
        server, run = self.get("GITHUB_SERVER_URL", "https://github.com"), self.get("GITHUB_RUN_ID")
        return f"{server}/{self.repo}/actions/runs/{run}" if self.repo and run else None

    @property
    def pr_number(self) -> int | None:
        pr = self.event.get("pull_request")
        number = pr.get("number") if isinstance(pr, dict) else None
        return int(number) if isinstance(number, int) else None

    @property
    def default_branch(self) -> str | None:
        repo = self.event.get("repository")
        branch = repo.get("default_branch") if isinstance(repo, dict) else None
        return str(branch) if branch else None

    @property
    def sha(self) -> str:
        pr = self.event.get("pull_request")
        if isinstance(pr, dict) and isinstance(pr.get("head"), dict) and pr["head"].get("sha"):
            return str(pr["head"]["sha"])
        return self.get("GITHUB_SHA")


class Runner:
    """One `bgdeploy ci` run. Output goes to stdout (the job log); files are the runner's env files."""

    def __init__(self, env: Mapping[str, str], print_: Callable[[str], None] = print) -> None:
        self.ctx = Context.from_env(env)
        self.print = print_
        self.warnings: list[str] = []
        self.report_path = str(Path(self.ctx.get("RUNNER_TEMP", "/tmp")) / "bgdeploy-report.md")
        self._github: Any = None

    # -- workflow commands and env files --------------------------------------------------------------

    def mask(self, value: str) -> None:
        for line in value.splitlines():
            if len(line.strip()) >= 4:
                self.print(f"::add-mask::{line.strip()}")

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.print(f"::warning title=bgdeploy::{message}".replace("\n", "%0A"))

    def group(self, title: str) -> None:
        self.print(f"::group::{title}")

    def endgroup(self) -> None:
        self.print("::endgroup::")

    def untrusted(self, text: str) -> None:
        """Echo text that may hold model output: no line of it can be taken as a workflow command."""
        token = secrets.token_hex(16)
        self.print(f"::stop-commands::{token}")
        self.print(text)
        self.print(f"::{token}::")

    def append(self, variable: str, text: str) -> None:
        path = self.ctx.get(variable)
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(text)

    def set_outputs(self, values: Mapping[str, str]) -> None:
        lines = []
        for name, value in values.items():
            delimiter = f"bgdeploy_{secrets.token_hex(8)}"
            lines.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
        self.append("GITHUB_OUTPUT", "".join(lines))

    # -- GitHub API, best effort -----------------------------------------------------------------------

    def github(self) -> Any:
        if self._github is None and self.ctx.token and self.ctx.repo:
            from bgdeploy.transports.github import GitHub

            self._github = GitHub(self.ctx.token, self.ctx.get("GITHUB_API_URL", "https://api.github.com"))
        return self._github

    def try_github(self, what: str, call: Callable[[Any], Any]) -> Any:
        client = self.github()
        if client is None:
            return None
        from bgdeploy.transports.github import GitHubError

        try:
            return call(client)
        except GitHubError as exc:
            hint = " (a read-only token, e.g. on a pull request from a fork?)" if exc.status == 403 else ""
            self.warn(f"could not {what}: {exc}{hint}; the deploy itself is not affected")
            return None

    def pr_numbers(self, mode: str) -> list[int]:
        if self.ctx.pr_number is not None:
            return [self.ctx.pr_number]
        if mode in DEPLOYING and self.ctx.sha:
            pulls = (
                self.try_github(
                    "find the merged pull request", lambda gh: gh.pulls_for_commit(self.ctx.repo, self.ctx.sha)
                )
                or []
            )
            # The commit's merged pull request if there is one, else the first that contains it.
            merged = [p for p in pulls if p.get("merged_at")]
            return [int(p["number"]) for p in (merged or pulls)[:1]]
        return []

    def comment(self, name: str, markdown: str, mode: str) -> None:
        if self.ctx.get("BGDEPLOY_COMMENT", "true").lower() in ("false", "0", "no"):
            return
        body = comment_body(markdown, name, self.ctx.run_url)
        for number in self.pr_numbers(mode):

            def upsert(gh: Any, n: int = number) -> Any:
                return gh.upsert_comment(self.ctx.repo, n, marker(name), body)

            done = self.try_github(f"comment on pull request #{number}", upsert)
            if done:
                self.print(f"bgdeploy: {'created' if done[2] else 'updated'} the comment on #{number}: {done[1]}")

    # -- the run ----------------------------------------------------------------------------------------

    def run(self) -> int:
        ctx = self.ctx
        for name in ("BGDEPLOY_SSH_KEY", "BGDEPLOY_GITHUB_TOKEN", "GITHUB_TOKEN", "BGDEPLOY_SSH_KEY_PASSPHRASE"):
            if ctx.get(name):
                self.mask(ctx.get(name))
        requested = ctx.get("BGDEPLOY_MODE", "auto").strip() or "auto"
        if requested not in MODES:
            raise UsageError(f"BGDEPLOY_MODE={requested!r} is not a mode; use one of {', '.join(MODES)}")
        spec_path = ctx.get("BGDEPLOY_SPEC", "bluegreen.yaml")

        self.group(f"bgdeploy validate {spec_path}")
        try:
            loaded = load_spec(spec_path)
        except SpecError as exc:
            return self.invalid(exc)
        except UsageError as exc:
            self.print(error_annotation(str(exc), title="bgdeploy"))
            self.set_outputs(outputs(None, "invalid", "", None))
            return EXIT_INVALID
        finally:
            self.endgroup()
        for secret_name in loaded.spec.runtime.secret_env:
            if ctx.get(secret_name):
                self.mask(ctx.get(secret_name))
        decision = decide_mode(
            requested,
            ctx.get("GITHUB_EVENT_NAME"),
            ctx.get("GITHUB_REF"),
            ctx.default_branch,
            loaded.spec.validation.preview_on_pr,
        )
        self.print(f"bgdeploy: mode {decision.mode}: {decision.why}")
        if decision.mode == "validate":
            self.set_outputs({**outputs(None, "valid", "", None), "model": loaded.spec.model.name})
            return EXIT_OK
        return self.on_host(loaded, decision.mode)

    def invalid(self, exc: SpecError) -> int:
        self.print(exc.render())
        for p in exc.problems:
            where = f"{p.path}: " if p.path else ""
            self.print(
                error_annotation(
                    f"{where}{p.message}", file=exc.filename, line=p.line, col=p.column, title="bluegreen.yaml"
                )
            )
        markdown = spec_errors_markdown(exc, None)
        Path(self.report_path).write_text(markdown)
        self.append("GITHUB_STEP_SUMMARY", markdown)
        name = _name_from_file(exc.filename)
        self.comment(name, markdown, "plan")
        self.set_outputs(outputs(None, "invalid", self.report_path, None))
        return EXIT_INVALID

    def on_host(self, loaded: LoadedSpec, mode: str) -> int:
        from bgdeploy.execute.commands import (
            open_session,
            run_abort,
            run_deploy,
            run_plan,
            run_promote,
            run_rollback,
        )
        from bgdeploy.execute.session import Output

        spec = loaded.spec
        environment = self.ctx.get("BGDEPLOY_ENVIRONMENT") or spec.report.environment
        deployment: list[int] = []

        def create_deployment(target: Release) -> None:
            """Once the release to make live is known: a GitHub deployment, in progress, naming model and colour."""
            if mode not in DEPLOYING or deployment:
                return
            payload = {"name": spec.name, "model": target.model, "image": target.image, "colour": target.colour}
            created = self.try_github(
                "create a GitHub deployment",
                lambda gh: gh.create_deployment(
                    self.ctx.repo,
                    self.ctx.sha or self.ctx.get("GITHUB_REF"),
                    environment,
                    payload,
                    f"bgdeploy {mode}: {target.model} on {target.colour}",
                ),
            )
            if created is not None:
                deployment.append(int(created))
                self.status(created, "in_progress", f"{mode} of {target.model} on {target.colour}", environment)

        result = Result(command=mode, name=spec.name)
        self.print(f"bgdeploy: {mode} of {spec.name}, each phase in its own group")
        out = Output(stream=sys.stdout, groups=True)
        try:
            with open_session(loaded, mode, out=out) as session:
                session.on_target = create_deployment
                result = session.result
                if mode == "plan":
                    result = run_plan(session)
                elif mode == "rollback":
                    result = run_rollback(session, lock_wait=600, unlock=False)
                elif mode in ("promote", "promote-full"):
                    result = run_promote(session, full=mode == "promote-full", lock_wait=600, unlock=False)
                elif mode == "abort":
                    result = run_abort(session, lock_wait=600, unlock=False)
                else:
                    result = run_deploy(session, force=False, lock_wait=600, unlock=False, preview=mode == "preview")
        except BgdeployError as exc:
            result.outcome = "failed"
            result.failure = result.failure or str(exc)
            code = exc.exit_code
        except Exception as exc:
            # A bug: exit 3, but the report, the outputs, the comment and the Deployment status still follow.
            result.outcome = "failed"
            result.failure = result.failure or f"internal error: {type(exc).__name__}: {exc}"
            code = EXIT_INTERNAL
        else:
            code = EXIT_DEPLOY_FAILED if result.outcome == "failed" else EXIT_OK
        result.warnings += self.warnings
        markdown = render(result)
        Path(self.report_path).write_text(markdown)
        self.group("bgdeploy report")
        self.untrusted(markdown)
        self.endgroup()
        self.append("GITHUB_STEP_SUMMARY", markdown)
        deployment_id = deployment[0] if deployment else None
        if mode in DEPLOYING and deployment_id is not None:
            self.finish_deployment(deployment_id, result, environment)
        if spec.report.pr_comment:
            self.comment(spec.name, markdown, mode)
        self.set_outputs(outputs(result, result.outcome, self.report_path, deployment_id))
        if result.outcome == "failed":
            self.print(error_annotation(result.failure or "the deploy failed", title="bgdeploy"))
        return code

    def status(self, deployment_id: int | None, state: str, description: str, environment: str) -> None:
        if deployment_id is None:
            return
        self.try_github(
            f"set the deployment status to {state}",
            lambda gh: gh.deployment_status(
                self.ctx.repo,
                deployment_id,
                state,
                log_url=self.ctx.run_url,
                description=description,
                environment=environment,
            ),
        )

    def finish_deployment(self, deployment_id: int, result: Result, environment: str) -> None:
        if result.outcome == "paused":
            self.status(deployment_id, "in_progress", f"canary paused: {result.paused or ''}"[:140], environment)
        elif result.outcome in ("deployed", "rolled-back", "aborted"):
            replaced = self.try_github(
                "find the replaced deployment",
                lambda gh: gh.last_successful_deployment(self.ctx.repo, environment, other_than=deployment_id),
            )
            self.status(deployment_id, "success", f"{result.active_colour} serves the new release", environment)
            if replaced is not None:
                self.status(replaced, "inactive", "replaced", environment)
        elif result.outcome == "unchanged":
            self.status(deployment_id, "success", "unchanged: already live", environment)
        else:
            self.status(deployment_id, "failure", (result.failure or "failed")[:140], environment)


def _name_from_file(filename: str) -> str:
    """The deployment name for the comment marker of a spec that did not validate: a plain `name:` line
    when it is a valid name (never parsed as YAML again: the file may be hostile), else "bluegreen"."""
    try:
        text = Path(filename).read_text(errors="replace")[:100_000]
    except OSError:
        return "bluegreen"
    match = re.search(r"^name:\s*['\"]?([a-z][a-z0-9-]{0,39})['\"]?\s*(#.*)?$", text, re.MULTILINE)
    return match.group(1) if match and re.fullmatch(NAME_PATTERN, match.group(1)) else "bluegreen"


def main(env: Mapping[str, str] | None = None) -> int:
    runner = Runner(os.environ if env is None else env)
    try:
        return runner.run()
    finally:
        sys.stdout.flush()
