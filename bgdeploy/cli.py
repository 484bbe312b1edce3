"""Command-line interface: argument parsing and exit codes; the work lives in the other packages.

Exit codes: 0 success or no-op, 1 deploy failed (the old colour still serves), 2 invalid spec or usage,
3 internal error. Commands import heavy modules lazily so that `validate` stays light.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from bgdeploy.errors import EXIT_DEPLOY_FAILED, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK, BgdeployError, SpecError
from bgdeploy.modes import HostMode, is_host_mode, modes_help

if TYPE_CHECKING:
    from bgdeploy.execute.session import Session
    from bgdeploy.plan.result import Result
    from bgdeploy.spec.address import Address
    from bgdeploy.spec.load import LoadedSpec
    from bgdeploy.spec.models import Jump

DEFAULT_SPEC = "bluegreen.yaml"


class _Version(argparse.Action):
    """--version: the commit is looked up only when asked for (it may run git)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from bgdeploy.about import version_text

        print(version_text())
        parser.exit(EXIT_OK)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


def _report_spec_error(exc: SpecError) -> None:
    from bgdeploy.github import workflow_commands
    from bgdeploy.untrusted.commands import inert

    # Spec keys and values are untrusted: no line of them may act as a workflow command.
    print(inert(exc.render()), file=sys.stderr)
    print(f"{exc}", file=sys.stderr)
    if workflow_commands.in_github_actions():
        log = workflow_commands.Log()
        for line in workflow_commands.problem_annotations(exc.problems, exc.filename):
            log.command(line)


def cmd_validate(args: argparse.Namespace) -> int:
    from bgdeploy.spec import load_spec
    from bgdeploy.summary import one_line

    loaded = load_spec(args.file)
    print(f"{args.file}: valid: {one_line(loaded.spec)}")
    _print_lint(loaded, args.file)
    return EXIT_OK


def _print_lint(loaded: LoadedSpec, filename: str) -> None:
    """Warnings about a valid spec (they never change the exit code); annotations under GitHub Actions."""
    from bgdeploy.github import workflow_commands
    from bgdeploy.spec.lint import lint

    for warning in lint(loaded.spec, loaded.located):
        print(warning.render(filename), file=sys.stderr)
        if workflow_commands.in_github_actions():
            where = dict(file=filename, line=warning.line, col=warning.column, title="bluegreen.yaml")
            print(workflow_commands.command("warning", f"{warning.path}: {warning.message}", **where))


def cmd_schema(args: argparse.Namespace) -> int:
    from bgdeploy.spec.schema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


def _write_outputs(args: argparse.Namespace, result: Result) -> None:
    from bgdeploy.report.markdown import render
    from bgdeploy.untrusted.secrets import mask, mask_json

    if getattr(args, "json", None):
        write_json(args.json, mask_json(result.to_json()))
    if getattr(args, "report", None):
        Path(args.report).write_text(mask(render(result)))


def write_json(destination: str, text: str) -> None:
    """`--json FILE` writes FILE; `--json` alone (or `--json -`) prints to stdout, the same for every command."""
    if destination == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    else:
        Path(destination).write_text(text)


def _on_host(args: argparse.Namespace, command: str, work: Callable[[Session], Result]) -> int:
    """Load the spec, connect, run `work`, write --json/--report whatever happened, map to an exit code."""
    from bgdeploy.execute.commands import open_session
    from bgdeploy.plan.result import Result
    from bgdeploy.report.markdown import headline
    from bgdeploy.spec import load_spec

    loaded = load_spec(args.file)
    if loaded.spec.target.hosts is not None:  # a fleet: plan/deploy/rollback on every host, the rest on one
        from bgdeploy.fleet import command as fleet_command

        if command in fleet_command.FLEET_COMMANDS and not getattr(args, "preview", False):
            return fleet_command.run(args, command, loaded)
        loaded = fleet_command.one_host(args, command, loaded)
    elif getattr(args, "fleet_host", None):
        from bgdeploy.errors import UsageError

        raise UsageError("--host picks one host of target.hosts, and this spec names a single target.host")
    # SIGTERM (a cancelled CI job) unwinds like Ctrl-C, so a deploy in progress rolls back cleanly.
    signal.signal(signal.SIGTERM, _interrupt)
    result = Result(command=command, name=loaded.spec.name)
    # With the JSON on stdout, everything else a command prints goes to stderr: stdout stays parseable.
    text_out = sys.stderr if getattr(args, "json", None) == "-" else sys.stdout
    try:
        with open_session(loaded, command) as session, contextlib.redirect_stdout(text_out):
            result = session.result
            result = work(session)
    except Exception as exc:
        # Whatever failed (a bug included: exit 3), --json and --report are still written.
        result.outcome = "failed"
        internal = f"internal error: {type(exc).__name__}: {exc}"
        result.failure = result.failure or (str(exc) if isinstance(exc, BgdeployError) else internal)
        _write_outputs(args, result)
        raise
    _write_outputs(args, result)
    print(headline(result, markdown=False), file=text_out)
    return EXIT_DEPLOY_FAILED if result.outcome == "failed" else EXIT_OK


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_plan(args: argparse.Namespace) -> int:
    from bgdeploy.execute.commands import run_plan

    def work(session: Session) -> Result:
        from bgdeploy.spec.lint import lint

        for warning in lint(session.loaded.spec, session.loaded.located):
            session.warn(f"{warning.path}: {warning.message}")
        result = run_plan(session)
        plan = result.plan
        assert plan is not None
        live = result.live_before
        print(f"live: {live.colour}: {live.model} ({live.image})" if live else "live: nothing (first deploy)")
        for change in plan.changes:
            print(f"change: {change.what}: {change.before} -> {change.after}")
        for line in result.gpu_lines:
            print(f"gpu: {line}")
        if result.policy is not None:
            print(f"policy: {result.policy.summary()}")
            for problem in result.policy.problems:
                print(f"policy: {problem.render(args.file)}")
        for number, step in enumerate(plan.steps, start=1):
            print(step.render(number))
        for blocker in plan.blockers:
            print(f"blocker: {blocker}")
        return result

    return _on_host(args, "plan", work)


def cmd_host(args: argparse.Namespace) -> int:
    """deploy, rollback, promote and abort: the mode's entry in the command table, the flags as its options."""
    from bgdeploy.execute.commands import COMMANDS, Options

    mode = _host_mode(args)
    options = Options(force=getattr(args, "force", False), lock_wait=args.lock_wait, unlock=args.force_unlock)
    return _on_host(args, args.command, lambda s: COMMANDS[mode](s, options))


def _host_mode(args: argparse.Namespace) -> HostMode:
    if args.command == "deploy" and args.preview:
        return "preview"
    if args.command == "promote" and args.full:
        return "promote-full"
    mode: str = args.command
    if not is_host_mode(mode):
        raise AssertionError(f"{mode} is not a host mode")
    return mode


def cmd_status(args: argparse.Namespace) -> int:
    from bgdeploy.execute.commands import open_session, run_status
    from bgdeploy.report.status import render_status
    from bgdeploy.spec import load_spec

    loaded = load_spec(args.file)
    if loaded.spec.target.hosts is not None:
        from bgdeploy.fleet.command import status as fleet_status

        return fleet_status(args, loaded)
    with open_session(loaded, "status") as session:
        data = run_status(session)
    if args.json is None:
        print(render_status(data))
    else:
        write_json(args.json, json.dumps(data, indent=2, sort_keys=True))
    # The router breaking the guarantee (pointing at a dead, wrong or stale colour) is a failure to see.
    return EXIT_DEPLOY_FAILED if data["router"].get("problems") else EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from bgdeploy.errors import UsageError
    from bgdeploy.lifecycle.remove import Removal, run_remove

    if not args.yes and not sys.stdin.isatty():
        raise UsageError(
            "remove asks before it removes anything, and there is no terminal to ask on: run it with --yes "
            "(`bgdeploy list` shows what is deployed first); nothing was removed"
        )

    def confirm(removal: Removal) -> bool:
        if args.yes:
            return True
        print(f"bgdeploy remove {removal.name} will remove:", file=sys.stderr)
        for line in removal.lines():
            print(f"  - {line}", file=sys.stderr)
        print("Remove them? [y/N] ", end="", file=sys.stderr, flush=True)
        return sys.stdin.readline().strip().lower() in ("y", "yes")

    return _on_host(
        args,
        "remove",
        lambda s: run_remove(
            s,
            keep_state=args.keep_state,
            confirm=confirm,
            lock_wait=args.lock_wait,
            unlock=args.force_unlock,
            name=args.name,
        ),
    )


def _deployment_name(text: str) -> str:
    import re

    from bgdeploy.spec.models import NAME_PATTERN

    if not re.fullmatch(NAME_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a deployment name ({NAME_PATTERN})")
    return text


def cmd_list(args: argparse.Namespace) -> int:
    from bgdeploy.errors import UsageError
    from bgdeploy.lifecycle.inventory import render, to_json
    from bgdeploy.lifecycle.listing import gather, jump_from_args, open_address
    from bgdeploy.spec.address import parse_address
    from bgdeploy.transports.connect import open_host
    from bgdeploy.transports.docker_engine import DockerEngine

    if args.host:
        jump = jump_from_args(args.jump, args.jump_host_key)
        host = open_address(parse_address(args.host), host_key=args.host_key, known_hosts=args.known_hosts, jump=jump)
    elif args.jump or args.jump_host_key:
        raise UsageError("--jump goes with --host; without --host the spec's target.jump is used")
    else:
        from bgdeploy.spec import load_spec

        loaded = load_spec(args.file)
        host = open_host(loaded.spec.target, Path(loaded.path).resolve().parent)
    try:
        rows = gather(host, DockerEngine(host.docker()))
        description = host.description
    finally:
        host.close()
    if args.json is None:
        print(render(rows, description))
    else:
        text = json.dumps({"host": description, "deployments": to_json(rows)}, indent=2, sort_keys=True) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from bgdeploy.execute.commands import open_session
    from bgdeploy.lifecycle.history import render
    from bgdeploy.lifecycle.listing import read_history
    from bgdeploy.spec import load_spec

    loaded = load_spec(args.file)
    if loaded.spec.target.hosts is not None:
        from bgdeploy.fleet.command import history as fleet_history

        return fleet_history(args, loaded)
    with open_session(loaded, "history") as session:
        entries = read_history(session.host, session.layout, args.n)
        description = session.host.description
    if args.json is None:
        print(render(entries, loaded.spec.name, description))
        return EXIT_OK
    text = json.dumps({"name": loaded.spec.name, "host": description, "history": entries}, indent=2) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
    else:
        Path(args.json).write_text(text)
    return EXIT_OK


def cmd_capture(args: argparse.Namespace) -> int:
    from bgdeploy.capture.command import run

    return run(args)


def cmd_init(args: argparse.Namespace) -> int:
    from bgdeploy.errors import DeployFailed, UsageError
    from bgdeploy.lifecycle.listing import jump_from_args, open_address
    from bgdeploy.onboarding.probe import read_facts
    from bgdeploy.onboarding.starter import DEFAULT_MODEL, looks_gated, render
    from bgdeploy.spec import load_spec
    from bgdeploy.spec.address import parse_address

    address = parse_address(args.address)
    jump = jump_from_args(args.jump, args.jump_host_key)
    output = Path(args.output)
    if output.exists():
        raise UsageError(f"{output} exists; bgdeploy init never overwrites a spec: move it away or give -o OTHER")
    if not args.yes and not args.host_key and not sys.stdin.isatty():
        raise UsageError(
            "init asks you to confirm the host key, and there is no terminal to ask on: give the key you expect "
            "(--host-key 'ssh-ed25519 AAAA...'), or --yes to pin whatever the server offers"
        )
    key_line, fingerprint = _offered_key(address, jump)
    print(f"{address.host}:{address.port} offers the host key {key_line.split()[0]} {fingerprint}", file=sys.stderr)
    if args.host_key and args.host_key.split()[:2] != key_line.split()[:2]:
        raise DeployFailed(
            f"the server offered {key_line.split()[0]} {fingerprint}, not the --host-key given: someone may be "
            "intercepting the connection, or the key given is not this host's; nothing was written"
        )
    if not args.yes and not args.host_key:
        print(
            "Check it on the host itself (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) or with its admin.\n"
            "Is this the host's key? [y/N] ",
            end="",
            file=sys.stderr,
            flush=True,
        )
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise DeployFailed("the host key was not confirmed; nothing was written")
    user = address.user or "root"
    host = open_address(address, host_key=key_line, known_hosts=None, jump=jump)
    try:
        facts = read_facts(host, address=(address.host, address.port, user), host_key=key_line, fingerprint=fingerprint)
    finally:
        host.close()
    model = args.model or DEFAULT_MODEL
    gated = args.gated or looks_gated(model)
    if args.model and not gated and not args.yes and sys.stdin.isatty():
        print(f"Does {model} need a Hugging Face token (a gated model)? [y/N] ", end="", file=sys.stderr, flush=True)
        gated = sys.stdin.readline().strip().lower() in ("y", "yes")
    text = render(facts, name=args.name, model=model, gated=gated, listen=args.listen, jump=jump)
    with output.open("x") as handle:  # exclusive: never over a file that appeared meanwhile
        handle.write(text)
    loaded = load_spec(str(output))
    for gpu_line in facts.gpus:
        print(f"gpu: GPU {gpu_line.index} {gpu_line.name}, {gpu_line.total_mib} MiB", file=sys.stderr)
    print(f"wrote {output}: {loaded.spec.name} on {user}@{address.host}:{address.port}, key pinned")
    _print_lint(loaded, str(output))
    print(f"next: bgdeploy plan -f {output}   (read-only), then bgdeploy deploy -f {output}")
    return EXIT_OK


def _offered_key(address: Address, jump: Jump | None) -> tuple[str, str]:
    """The key the GPU host offers, read directly or through the --jump host (whose own key is pinned)."""
    from bgdeploy.spec.models import Target
    from bgdeploy.transports.connect import open_jump
    from bgdeploy.transports.hostkey import offered_host_key

    if jump is None:
        return offered_host_key(address.host, address.port)
    bastion = open_jump(Target(host=address.host, port=address.port, user=address.user or "root", jump=jump))
    try:
        return offered_host_key(address.host, address.port, via=bastion)
    finally:
        bastion.close()


def cmd_ci(args: argparse.Namespace) -> int:
    from bgdeploy.github.action import main as ci_main

    # A cancelled job: the runner sends SIGINT, then SIGTERM 7.5 s later, then kills. The first signal unwinds
    # (a deploy rolls back); the second must not cut that rollback short.
    signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    return ci_main()


def _interrupt_once(signum: int, frame: object) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def cmd_policy_check(args: argparse.Namespace) -> int:
    from bgdeploy.policy.check import check_offline

    print(check_offline(args.file, args.policy))
    return EXIT_OK


def cmd_policy_schema(args: argparse.Namespace) -> int:
    from bgdeploy.policy.schema import policy_schema_text

    sys.stdout.write(policy_schema_text())
    return EXIT_OK


def _policy_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    policy = commands.add_parser(
        "policy", help="the host policy: check a spec against a policy file offline, print its schema"
    )
    actions = policy.add_subparsers(dest="policy_command", metavar="ACTION", parser_class=_Parser)
    check = actions.add_parser(
        "check",
        help="judge a spec against a policy file on this machine (offline; the host is not contacted)",
        description="Judge a spec against a host policy file without contacting the host. Exit 0: allowed; "
        "2: every violation listed, located in the spec.",
    )
    check.add_argument("-f", "--file", default=DEFAULT_SPEC, metavar="PATH", help="the spec file")
    check.add_argument("--policy", required=True, metavar="FILE", help="the policy file (e.g. a copy of the host's)")
    check.set_defaults(run=cmd_policy_check)
    schema = actions.add_parser("schema", help="print the JSON schema of the policy file")
    schema.set_defaults(run=cmd_policy_schema)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bgdeploy",
        description=("Zero-downtime blue-green deploys of vLLM on your own GPU servers, driven by bluegreen.yaml."),
        epilog="Exit codes: 0 success or nothing to do, 1 deploy failed (the old colour still serves), "
        "2 invalid spec or usage, 3 internal error.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and the commit, then exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(
        name: str, help_text: str, run: Callable[[argparse.Namespace], int], *, spec: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if spec:  # `schema` reads no spec: a -f there would be ignored, so it is refused
            sub.add_argument(
                "-f", "--file", default=DEFAULT_SPEC, metavar="PATH", help=f"the spec file (default: ./{DEFAULT_SPEC})"
            )
        sub.set_defaults(run=run)
        return sub

    command("validate", "check bluegreen.yaml against the schema and the rules; changes nothing", cmd_validate)
    command("schema", "print the JSON schema of bluegreen.yaml", cmd_schema, spec=False)

    def jumping(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--jump", metavar="[USER@]HOST[:PORT]", help="reach the host through this bastion (as ssh -J, target.jump)"
        )
        sub.add_argument(
            "--jump-host-key", metavar="KEY", help="with --jump: the bastion's pinned key 'ssh-ed25519 ...'"
        )

    init = command(
        "init",
        "connect to a GPU host, show its key to confirm, detect its GPUs and write a starter bluegreen.yaml",
        cmd_init,
        spec=False,
    )
    init.add_argument(
        "address", metavar="[USER@]HOST[:PORT]", help="the GPU host (SSH key from BGDEPLOY_SSH_KEY[_FILE])"
    )
    init.add_argument("-o", "--output", default=DEFAULT_SPEC, metavar="PATH", help="where to write (never overwritten)")
    init.add_argument("--name", default="chat", type=_deployment_name, help="the deployment's name (default: chat)")
    init.add_argument("--model", metavar="MODEL", help="the Hugging Face model id (default: a small ungated one)")
    init.add_argument("--gated", action="store_true", help="the model needs a Hugging Face token (adds HF_TOKEN)")
    init.add_argument("--listen", type=int, default=8080, metavar="PORT", help="the router's port (default 8080)")
    init.add_argument("--host-key", metavar="KEY", help="the key you expect ('ssh-ed25519 AAAA...'): no question")
    init.add_argument("--yes", "-y", action="store_true", help="pin the offered key without asking (scripts)")
    jumping(init)

    def outputs(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--json",
            nargs="?",
            const="-",
            metavar="FILE",
            help="the structured result as JSON: to FILE, or to stdout (the text output then goes to stderr)",
        )
        sub.add_argument("--report", metavar="FILE", help="write a markdown report to FILE")

    def locking(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--lock-wait",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="wait this long for another deploy of the same name to finish (default: refuse)",
        )
        sub.add_argument(
            "--force-unlock",
            action="store_true",
            help="remove the deploy lock first, whoever holds it (only when that deploy is gone)",
        )

    outputs(command("plan", "show what a deploy would do on the host (read-only)", cmd_plan))
    deploy = command("deploy", "start the new colour, validate it, switch traffic, roll back on failure", cmd_host)
    deploy.add_argument("--force", action="store_true", help="deploy even when this spec is already live")
    deploy.add_argument(
        "--preview",
        action="store_true",
        help="load and validate the new colour beside the live one, never switch, then remove it",
    )
    locking(deploy)
    outputs(deploy)
    rollback = command("rollback", "make the previous colour live again", cmd_host)
    locking(rollback)
    outputs(rollback)
    promote = command("promote", "go on with a paused canary: the next step, then the rest of the deploy", cmd_host)
    promote.add_argument("--full", action="store_true", help="skip the remaining canary steps: straight to 100%%")
    locking(promote)
    outputs(promote)
    abort = command("abort", "stop a canary: all traffic back to the old colour, the new one removed", cmd_host)
    locking(abort)
    outputs(abort)
    status = command("status", "show the live colour, each colour's health and the last deploys", cmd_status)
    status.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="print JSON (to FILE when given) instead of text"
    )
    for name in ("plan", "deploy", "rollback", "promote", "abort", "status"):
        commands.choices[name].add_argument(
            "--host",
            dest="fleet_host",
            metavar="LABEL",
            help="a fleet (target.hosts): this one host only (its label or address)",
        )
    remove = command(
        "remove",
        "take the deployment off the host: router, both colours, network, logs and state (asks first)",
        cmd_remove,
    )
    remove.add_argument("--yes", "-y", action="store_true", help="do not ask (needed without a terminal)")
    remove.add_argument(
        "--keep-state", action="store_true", help="keep the state directory and its history on the host"
    )
    remove.add_argument(
        "--name",
        metavar="NAME",
        type=_deployment_name,
        help="remove the deployment NAME on the spec's host instead (a leftover that `bgdeploy list` flagged)",
    )
    remove.add_argument(
        "--host", dest="fleet_host", metavar="LABEL", help="a fleet (target.hosts): remove it from this one host"
    )
    locking(remove)
    outputs(remove)
    listing = command(
        "list", "every bgdeploy deployment on a host (from -f SPEC's target, or --host), leftovers flagged", cmd_list
    )
    listing.add_argument("--host", metavar="[USER@]HOST[:PORT]", help="the host to list, instead of the spec's target")
    listing.add_argument("--host-key", metavar="KEY", help="with --host: its pinned key, 'ssh-ed25519 AAAA...'")
    listing.add_argument(
        "--known-hosts", metavar="FILE", help="with --host: a known_hosts file (default: ~/.ssh/known_hosts)"
    )
    jumping(listing)
    listing.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="print JSON (to FILE when given) instead of a table"
    )
    history = command(
        "history", "the deployment's deploys, rollbacks and removals on its host, newest last", cmd_history
    )
    history.add_argument(
        "-n", type=int, default=20, metavar="N", help="the last N entries (default 20; the host keeps 500)"
    )
    history.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="print JSON (to FILE when given) instead of lines"
    )
    history.add_argument("--host", dest="fleet_host", metavar="LABEL", help="a fleet (target.hosts): this host only")
    capture = command(
        "capture",
        "live requests captured on the host for replay (validation.replay.capture): sizes, or delete them",
        cmd_capture,
    )
    capture.add_argument("action", choices=("status", "purge"), help="status: what is stored; purge: delete it")
    capture.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="status as JSON (to FILE when given); never any content"
    )
    ci = commands.add_parser(
        "ci",
        help="the GitHub Action's work (settings from BGDEPLOY_* and GITHUB_* environment variables)",
        description="Validate, plan, preview, deploy or roll back as the GitHub Action does, and report to the "
        "job summary, the step outputs, the pull request and GitHub Deployments. Reads BGDEPLOY_SPEC, "
        f"BGDEPLOY_MODE ({modes_help()}), BGDEPLOY_SSH_KEY, BGDEPLOY_KNOWN_HOSTS, "
        "BGDEPLOY_GITHUB_TOKEN, BGDEPLOY_COMMENT, BGDEPLOY_ENVIRONMENT and GitHub's own variables.",
    )
    ci.set_defaults(run=cmd_ci)
    _policy_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a command with stdout and stderr behind the masking choke point (and, under GitHub Actions, with
    every line made inert unless it is one of our own workflow commands)."""
    from bgdeploy.github.workflow_commands import in_github_actions
    from bgdeploy.untrusted import secrets
    from bgdeploy.untrusted.commands import inert_line

    secrets.register_env(os.environ)
    transform = inert_line if in_github_actions() else None
    saved = sys.stdout, sys.stderr
    sys.stdout = secrets.MaskingStream(saved[0], transform)
    sys.stderr = secrets.MaskingStream(saved[1], transform)
    try:
        return _main(argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_INVALID
    try:
        code: int = args.run(args)
        return code
    except SpecError as exc:
        _report_spec_error(exc)
        return exc.exit_code
    except BgdeployError as exc:
        print(f"bgdeploy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bgdeploy: interrupted", file=sys.stderr)
        return EXIT_DEPLOY_FAILED
    except Exception as exc:
        print(
            f"bgdeploy: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug; please report it with the command you ran.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
