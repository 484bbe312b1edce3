"""Command-line interface: argument parsing and exit codes; the work lives in the other packages.

Exit codes: 0 success or no-op, 1 deploy failed (the old colour still serves), 2 invalid spec or usage,
3 internal error. Commands import heavy modules lazily so that `validate` stays light.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from bgdeploy import __version__
from bgdeploy.errors import EXIT_INTERNAL, EXIT_INVALID, EXIT_OK, BgdeployError, SpecError

DEFAULT_SPEC = "bluegreen.yaml"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


def _report_spec_error(exc: SpecError) -> None:
    from bgdeploy import workflow_commands

    print(exc.render(), file=sys.stderr)
    print(f"{exc}", file=sys.stderr)
    if workflow_commands.in_github_actions():
        for p in exc.problems:
            where = f"{p.path}: " if p.path else ""
            print(
                workflow_commands.error(
                    f"{where}{p.message}", file=exc.filename, line=p.line, col=p.column, title="bluegreen.yaml"
                )
            )


def cmd_validate(args: argparse.Namespace) -> int:
    from bgdeploy.spec import load_spec
    from bgdeploy.summary import one_line

    loaded = load_spec(args.file)
    print(f"{args.file}: valid: {one_line(loaded.spec)}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from bgdeploy.spec.schema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bgdeploy",
        description=("Zero-downtime blue-green deploys of vLLM on your own GPU servers, driven by bluegreen.yaml."),
        epilog="Exit codes: 0 success or nothing to do, 1 deploy failed (the old colour still serves), "
        "2 invalid spec or usage, 3 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"bgdeploy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str, run: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "-f", "--file", default=DEFAULT_SPEC, metavar="PATH", help=f"the spec file (default: ./{DEFAULT_SPEC})"
        )
        sub.set_defaults(run=run)
        return sub

    command("validate", "check bluegreen.yaml against the schema and the rules; changes nothing", cmd_validate)
    command("schema", "print the JSON schema of bluegreen.yaml", cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
        return EXIT_INTERNAL
    except Exception as exc:
        print(
            f"bgdeploy: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug; please report it with the command you ran.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
