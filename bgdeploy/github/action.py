"""`bgdeploy ci`: the GitHub Action's work. Reads the action's inputs and GitHub's variables from the
environment, runs validate / offline plan / plan / preview / deploy / rollback / canary moves, and reports:
job summary, step outputs, `::error` annotations, the pull request comment and GitHub Deployments.

A pull request never touches the host unless the workflow asks (`mode: plan` / `mode: preview`, in a job behind
a protected environment that holds the key); `auto` on a pull request plans offline from GitHub's record.
Reporting never fails or undoes a deploy: a GitHub error (a read-only token on a fork's PR, an outage) becomes a
warning. Secrets are masked before anything else is printed; untrusted text never starts a workflow command.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from bgdeploy.errors import (
    EXIT_DEPLOY_FAILED,
    EXIT_INTERNAL,
    EXIT_INVALID,
    EXIT_OK,
    BgdeployError,
    Problem,
    SpecError,
    UsageError,
)
from bgdeploy.github import workflow_commands as wc
from bgdeploy.github.client import GitHubApi
from bgdeploy.github.comment import comment_body, ours, spec_errors_markdown
from bgdeploy.github.context import ACTIONS_BOT, Context
from bgdeploy.github.deployments import GpuFact, Record
from bgdeploy.github.modes import decide_mode
from bgdeploy.github.offline import held_mib, offline_plan
from bgdeploy.github.pr_target import pr_target_problems
from bgdeploy.modes import DEPLOYING, MODES, HostMode, is_host_mode, is_mode
from bgdeploy.plan.result import Result
from bgdeploy.plan.state import Release
from bgdeploy.report.markdown import render
from bgdeploy.spec.load import LoadedSpec, load_spec
from bgdeploy.spec.models import NAME_PATTERN
from bgdeploy.untrusted import secrets as secret_registry
from bgdeploy.untrusted.markdown import escape_inline

T = TypeVar("T")


def outputs(result: Result | None, outcome: str, report_path: str, deployment_id: int | None) -> dict[str, str]:
    target = result.target if result else None
    return {
        "outcome": outcome,
        "active-colour": (result.active_colour or "") if result else "",
        "previous-colour": (result.previous_colour or "") if result else "",
        # The first spelling, kept so that workflows written against it go on working.
        "active-color": (result.active_colour or "") if result else "",
        "previous-color": (result.previous_colour or "") if result else "",
        "model": target.model if target else "",
        "report-path": report_path,
        "deployment-id": str(deployment_id) if deployment_id is not None else "",
        # A fleet's run (bgdeploy.fleet.ci) fills these in; every run writes them, so the action's outputs resolve.
        "hosts-deployed": "",
        "hosts-failed": "",
    }


class Runner:
    """One `bgdeploy ci` run. Output goes to the job log through `wc.Log`; files are the runner's env files."""

    def __init__(
        self,
        env: Mapping[str, str],
        print_: Callable[[str], None] | None = None,
        github: GitHubApi | None = None,
    ) -> None:
        self.ctx = Context.from_env(env)
        self.log = wc.Log(print_)
        self.warnings: list[str] = []
        self.url = ""  # the spec's report.url: the `url` output and the Deployments' environment_url
        self.report_path = str(Path(self.ctx.get("RUNNER_TEMP", "/tmp")) / "bgdeploy-report.md")
        self._github = github
        self._author: str | None = None

    # -- workflow commands and env files --------------------------------------------------------------

    def say(self, text: str) -> None:
        self.log.text(text)

    def mask(self, value: str) -> None:
        secret_registry.register(value)
        self.log.mask_secret(value)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log.command(wc.warning(message, title="bgdeploy"))

    def notice(self, message: str) -> None:
        self.log.command(wc.notice(message, title="bgdeploy"))

    def append(self, variable: str, text: str) -> None:
        path = self.ctx.get(variable)
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(secret_registry.mask(text))

    def set_outputs(self, values: Mapping[str, str]) -> None:
        lines = []
        for name, value in {**values, "url": self.url}.items():
            delimiter = f"bgdeploy_{secrets.token_hex(8)}"
            lines.append(f"{name}<<{delimiter}\n{value.replace(delimiter, '')}\n{delimiter}\n")
        self.append("GITHUB_OUTPUT", "".join(lines))

    # -- GitHub API, best effort -----------------------------------------------------------------------

    def github(self) -> GitHubApi | None:
        if self._github is None and self.ctx.token and self.ctx.repo:
            from bgdeploy.transports.github import GitHub

            self._github = GitHub(self.ctx.token, self.ctx.api_url)
        return self._github

    def try_github(self, what: str, call: Callable[[GitHubApi], T]) -> T | None:
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

    def comment_author(self, client: GitHubApi) -> str:
        """The identity whose comment we may update: the token's user, or github-actions[bot] for the Actions
        token (which has no user); BGDEPLOY_COMMENT_AUTHOR overrides both."""
        if self._author is None:
            explicit = self.ctx.get("BGDEPLOY_COMMENT_AUTHOR").strip()
            if explicit:
                self._author = explicit
            elif self.ctx.token.startswith(("ghs_", "v1.")):  # an installation token: the Actions token
                self._author = ACTIONS_BOT
            else:
                self._author = client.authenticated_login() or ACTIONS_BOT
        return self._author

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
            merged = [p for p in pulls if p.merged]
            return [p.number for p in (merged or pulls)[:1]]
        return []

    def comment(self, name: str, markdown: str, mode: str) -> None:
        if not self.ctx.flag("BGDEPLOY_COMMENT", True):
            return
        if self.ctx.from_fork and self.ctx.event_name == "pull_request":
            self.notice("a pull request from a fork: its token cannot write, so the report is in the job summary only")
            return
        body = comment_body(markdown, name, self.ctx.run_url)
        for number in self.pr_numbers(mode):

            def upsert(gh: GitHubApi, n: int = number) -> tuple[str, str]:
                mine = ours(gh.list_comments(self.ctx.repo, n), name, self.comment_author(gh))
                if mine is not None:
                    return "updated", gh.update_comment(self.ctx.repo, mine.id, body).html_url
                return "created", gh.create_comment(self.ctx.repo, n, body).html_url

            done = self.try_github(f"comment on pull request #{number}", upsert)
            if done:
                self.say(f"bgdeploy: {done[0]} the comment on #{number}: {done[1]}")

    # -- the run ----------------------------------------------------------------------------------------

    def run(self) -> int:
        ctx = self.ctx
        for name in secret_registry.SECRET_VARIABLES:
            if ctx.get(name):
                self.mask(ctx.get(name))
        requested = ctx.get("BGDEPLOY_MODE", "auto").strip() or "auto"
        if not is_mode(requested):
            raise UsageError(f"BGDEPLOY_MODE={requested!r} is not a mode; use one of {', '.join(MODES)}")
        spec_path = ctx.get("BGDEPLOY_SPEC", "bluegreen.yaml")

        self.log.group(f"bgdeploy validate {spec_path}")
        try:
            loaded = load_spec(spec_path)
        except SpecError as exc:
            return self.invalid(exc)
        except UsageError as exc:
            self.log.command(wc.error(str(exc), title="bgdeploy"))
            self.set_outputs(outputs(None, "invalid", "", None))
            return EXIT_INVALID
        finally:
            self.log.endgroup()
        spec = loaded.spec
        self.url = spec.report.url or ""
        for secret_name in spec.runtime.secret_env:
            if ctx.get(secret_name):
                self.mask(ctx.get(secret_name))
        decision = decide_mode(requested, ctx.event_name, ctx.get("GITHUB_REF"), ctx.default_branch)
        self.say(f"bgdeploy: mode {decision.mode}: {decision.why}")
        if decision.mode == "validate":
            self.set_outputs({**outputs(None, "valid", "", None), "model": spec.model.name})
            return EXIT_OK
        needs_key = spec.target.transport == "ssh" and not ctx.has_ssh_key
        if decision.mode == "offline-plan" or (decision.mode in ("plan", "preview") and needs_key):
            skipped = decision.mode != "offline-plan"
            if skipped:
                self.notice(
                    f"mode {decision.mode} needs the deploy key, and this run has none (a pull request from a fork, "
                    "or a job outside the environment that holds it): showing the offline plan instead"
                )
            return self.offline(loaded, skipped=skipped)
        if needs_key:
            raise UsageError(
                f"mode {decision.mode} connects to {spec.target.host} and needs the deploy key: pass the "
                "ssh-private-key input from the secret of the protected environment that holds it"
            )
        if not is_host_mode(decision.mode):  # decide_mode never leaves `auto`; the others returned above
            raise UsageError(f"mode {decision.mode} does not run on the host")
        if ctx.is_pull_request:
            self.check_pr_target(loaded)
        return self.on_host(loaded, decision.mode)

    def check_pr_target(self, loaded: LoadedSpec) -> None:
        """A pull request's spec names the host and pins its key: only the workflow's known-hosts may decide
        which host a plan or preview reaches (else the HF token and API key could go to the PR's own server)."""
        pins = self.ctx.get("BGDEPLOY_KNOWN_HOSTS").strip()
        if pins and "\n" not in pins and Path(pins).is_file():
            pins = Path(pins).read_text(encoding="utf-8", errors="replace")
        if not pins:
            self.warn(
                "this pull request's spec chooses the host and pins its key: pass the known-hosts input (the "
                "host's known_hosts lines, from the protected environment) so a PR cannot point this run, and "
                "its secrets, at a server of its own"
            )
            return
        problems = pr_target_problems(loaded.spec.target, pins)
        if problems:
            raise UsageError(
                "refused: a pull request may reach only the hosts and keys of the workflow's known-hosts input; "
                + "; ".join(problems)
                + ". Nothing was contacted."
            )

    def invalid(self, exc: SpecError) -> int:
        self.say(exc.render())
        for line in wc.problem_annotations(exc.problems, exc.filename):
            self.log.command(line)
        markdown = spec_errors_markdown(exc, None)
        self.write_report(markdown)
        self.comment(_name_from_file(exc.filename), markdown, "plan")
        self.set_outputs(outputs(None, "invalid", self.report_path, None))
        return EXIT_INVALID

    def write_report(self, markdown: str) -> None:
        markdown = secret_registry.mask(markdown)
        Path(self.report_path).write_text(markdown)
        self.append("GITHUB_STEP_SUMMARY", markdown)

    def environment(self, loaded: LoadedSpec) -> str:
        return self.ctx.get("BGDEPLOY_ENVIRONMENT") or loaded.spec.report.environment

    def offline(self, loaded: LoadedSpec, *, skipped: bool) -> int:
        """The plan from GitHub's record of the live release: no key, no connection to the host."""
        spec = loaded.spec
        environment = self.environment(loaded)
        source = f"GitHub deployments of {environment}"
        record: Record | None = None
        if self.github() is None:
            source = "no GitHub token to read them"
        else:
            warned = len(self.warnings)
            found = self.try_github(
                "read the last deployment",
                lambda gh: gh.last_successful_deployment(self.ctx.repo, environment),
            )
            if len(self.warnings) > warned:  # GitHub answered with an error: say so, not "no deployment"
                source = f"the deployments of {environment} could not be read (the token needs deployments: read)"
            if found is not None:
                record = Record.from_payload(found.payload, spec.name)
                source = f"GitHub deployment {found.id} of {environment}"
                if record is None:
                    self.warn(f"deployment {found.id} of {environment} holds no bgdeploy record of {spec.name}")
        planned = offline_plan(spec, loaded.spec_hash, record, source)
        result = planned.result
        result.warnings += self.warnings
        notes = list(planned.notes)
        violations = self.policy_verdict(loaded, notes)
        if spec.validation.preview_on_pr:
            notes.append(
                "🔍 The spec asks for a preview (validation.preview_on_pr). A pull request never starts one: "
                "a maintainer can run the preview job (mode: preview, behind its own protected environment)."
            )
        if skipped:
            notes.insert(0, "⏭️ **Skipped**: this run has no deploy key, so the host was not contacted.")
        markdown = _with_notes(render(result), notes)
        self.log.group("bgdeploy report")
        self.log.untrusted_block(markdown)
        self.log.endgroup()
        self.write_report(markdown)
        if spec.report.pr_comment:
            self.comment(spec.name, markdown, "plan")
        outcome = "skipped" if skipped else "planned"
        if violations:
            for line in wc.problem_annotations(violations, loaded.path, title="host policy"):
                self.log.command(line)
            outcome = "invalid"
        self.set_outputs({**outputs(result, outcome, self.report_path, None), "model": spec.model.name})
        return EXIT_INVALID if violations else EXIT_OK

    def policy_verdict(self, loaded: LoadedSpec, notes: list[str]) -> list[Problem]:
        """The host policy's verdict on the spec, offline, from the copy the workflow passes (BGDEPLOY_POLICY_FILE,
        e.g. checked out from the default branch, which the pull request cannot change). The host checks its own
        file again before any change; without a copy, the note says so."""
        path = self.ctx.get("BGDEPLOY_POLICY_FILE").strip()
        if not path:
            notes.append(
                "Policy: not checked here (no policy file given to this run); the host checks its own policy file "
                "before any change and refuses a spec it does not allow. A pull request cannot change that file."
            )
            return []
        from bgdeploy.policy.evaluate import evaluate
        from bgdeploy.policy.load import parse_policy_bytes

        try:
            policy = parse_policy_bytes(Path(path).read_bytes(), path)
        except (OSError, BgdeployError) as exc:
            notes.append(
                f"Policy: the copy {escape_inline(path, 120)} could not be read ({escape_inline(str(exc), 300)})."
            )
            return []
        problems = evaluate(loaded.spec, loaded.located, policy.policy, path)
        if not problems:
            notes.append(
                f"Policy: ✅ allowed by {escape_inline(path, 120)} (checked offline; the host checks its own file "
                "again before any change)."
            )
            return []
        notes.append(
            f"Policy: ❌ {len(problems)} violation(s) of {escape_inline(path, 120)}; the host would refuse it:"
        )
        notes += [
            f"- {p.line}:{p.column} {escape_inline(p.path or '-', 80)}: {escape_inline(p.message, 400)}"
            for p in problems
        ]
        return problems

    def on_host(self, loaded: LoadedSpec, mode: HostMode) -> int:
        from bgdeploy.execute.commands import COMMANDS, Options, open_session

        if loaded.spec.target.hosts is not None:  # a fleet: every host, one report row each
            from bgdeploy.fleet.ci import run_fleet_mode

            return run_fleet_mode(self, loaded, mode)
        from bgdeploy.execute.session import Output, Session

        spec = loaded.spec
        environment = self.environment(loaded)
        deployment: list[int] = []
        current: list[Session] = []

        def create_deployment(target: Release) -> None:
            """Once the release to make live is known: a GitHub deployment, in progress, whose payload records
            the release and the GPU facts seen at preflight (what an offline plan needs later)."""
            if mode not in DEPLOYING or deployment:
                return
            session = current[0] if current else None
            record = Record(
                name=spec.name,
                release=target,
                recorded_at=target.deployed_at or (session.result.started_at if session else ""),
                gpus=tuple(_gpu_facts(session)) if session else (),
            )
            created = self.try_github(
                "create a GitHub deployment",
                lambda gh: gh.create_deployment(
                    self.ctx.repo,
                    self.ctx.sha or self.ctx.get("GITHUB_REF"),
                    environment,
                    record.payload(),
                    f"bgdeploy {mode}: {target.model} on {target.colour}",
                ),
            )
            if created is not None:
                deployment.append(created)
                self.status(created, "in_progress", f"{mode} of {target.model} on {target.colour}", environment)

        result = Result(command=mode, name=spec.name)
        self.say(f"bgdeploy: {mode} of {spec.name}, each phase in its own group")
        out = Output(stream=sys.stdout, groups=True)
        try:
            with open_session(loaded, mode, out=out) as session:
                current.append(session)
                session.on_target = create_deployment
                result = session.result
                # A remove was asked for by the workflow, behind its environment: no prompt in CI.
                result = COMMANDS[mode](session, Options(lock_wait=600, confirm=lambda _: True))
        except BgdeployError as exc:
            result.outcome = "failed"
            result.failure = result.failure or str(exc)
            code = exc.exit_code
        except KeyboardInterrupt:
            # The job was cancelled (the runner's SIGINT, then SIGTERM): the deploy has rolled back on its way
            # out; what follows reports it while the runner still waits (about 10 s before its SIGKILL).
            self.say("bgdeploy: interrupted (the job was cancelled)")
            result.outcome = "failed"
            result.failure = result.failure or "interrupted: the job was cancelled; the deploy was rolled back"
            code = EXIT_DEPLOY_FAILED
        except Exception as exc:
            # A bug: exit 3, but the report, the outputs, the comment and the Deployment status still follow.
            result.outcome = "failed"
            result.failure = result.failure or secret_registry.mask(f"internal error: {type(exc).__name__}: {exc}")
            code = EXIT_INTERNAL
        else:
            code = EXIT_DEPLOY_FAILED if result.outcome == "failed" else EXIT_OK
        result.warnings += self.warnings
        markdown = render(result)
        self.log.group("bgdeploy report")
        self.log.untrusted_block(markdown)
        self.log.endgroup()
        self.write_report(markdown)
        deployment_id = deployment[0] if deployment else None
        if mode in DEPLOYING and deployment_id is not None:
            self.finish_deployment(deployment_id, result, environment)
        if mode == "remove" and result.outcome in ("removed", "unchanged"):
            self.retire_deployment(environment)
        if spec.report.pr_comment:
            self.comment(spec.name, markdown, mode)
        self.set_outputs(outputs(result, result.outcome, self.report_path, deployment_id))
        if result.outcome == "failed":
            self.log.command(wc.error(result.failure or "the deploy failed", title="bgdeploy"))
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
                # Masked, then cut to GitHub's 140 characters: a cut first could leave a secret's start.
                description=secret_registry.mask(description)[:140],
                environment=environment,
                environment_url=self.url or None,
            ),
        )

    def retire_deployment(self, environment: str) -> None:
        """After `remove`: the environment's live GitHub Deployment is set inactive (nothing serves it now)."""
        live = self.try_github(
            "find the removed deployment", lambda gh: gh.last_successful_deployment(self.ctx.repo, environment)
        )
        if live is not None:
            self.status(live.id, "inactive", "removed from the host by bgdeploy remove", environment)

    def finish_deployment(self, deployment_id: int, result: Result, environment: str) -> None:
        if result.outcome == "paused":
            self.status(deployment_id, "in_progress", f"canary paused: {result.paused or ''}", environment)
        elif result.outcome in ("deployed", "rolled-back", "aborted"):
            replaced = self.try_github(
                "find the replaced deployment",
                lambda gh: gh.last_successful_deployment(self.ctx.repo, environment, other_than=deployment_id),
            )
            # The final status names the release too (its payload holds the full record for offline plans).
            target = result.target
            what = f"{target.model} (spec {target.spec_hash[:12]})" if target else "the new release"
            self.status(deployment_id, "success", f"{result.active_colour} serves {what}", environment)
            if replaced is not None:
                self.status(replaced.id, "inactive", "replaced", environment)
        elif result.outcome == "unchanged":
            self.status(deployment_id, "success", "unchanged: already live", environment)
        else:
            self.status(deployment_id, "failure", result.failure or "failed", environment)


def _gpu_facts(session: object) -> list[GpuFact]:
    """The GPUs the session's preflight read, with what the then-live colour held on each."""
    from bgdeploy.execute.session import Session

    if not isinstance(session, Session):
        return []
    live = session.result.live_before
    live_gpus = {int(i) for i in live.gpus.split(",") if i.strip().isdigit()} if live else set()
    facts = []
    for g in session.gpus_seen:
        held = held_mib(live.memory, g.usable_mib) if live is not None and g.index in live_gpus else 0
        facts.append(GpuFact(g.index, g.name, g.total_mib, g.used_mib, g.free_mib, min(held, g.used_mib)))
    return facts


def _with_notes(markdown: str, notes: list[str]) -> str:
    """The report with the offline notes under its headline (heading, blank line, headline, blank line)."""
    lines = markdown.split("\n")
    head, rest = lines[:4], lines[4:]
    return "\n".join([*head, *[f"> {note}" if note else ">" for note in _joined(notes)], "", *rest])


def _joined(notes: list[str]) -> list[str]:
    out: list[str] = []
    for note in notes:
        if out:
            out.append("")
        out.append(note)
    return out


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
