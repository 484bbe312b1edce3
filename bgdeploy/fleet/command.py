"""The fleet side of the CLI: `plan`, `deploy`, `rollback` and `status` on a spec with target.hosts.

Prints per-host progress (each line starts with the host's label) and a one-line-per-host summary, writes
--json / --report for the whole fleet, and maps the outcome to the exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any

from bgdeploy.errors import EXIT_DEPLOY_FAILED, EXIT_OK, BgdeployError, UsageError
from bgdeploy.fleet.members import members, select
from bgdeploy.fleet.report import render_fleet, render_text
from bgdeploy.fleet.result import FleetResult
from bgdeploy.fleet.runner import (
    FleetBlocked,
    deploy_fleet,
    lock_all,
    open_fleet,
    plan_fleet,
    release_all,
    rollback_fleet,
    status_fleet,
)
from bgdeploy.spec.load import LoadedSpec

FAILED = ("failed", "partial", "blocked")
FLEET_COMMANDS = ("plan", "deploy", "rollback")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def one_host(args: argparse.Namespace, command: str, loaded: LoadedSpec) -> LoadedSpec:
    """The single-host spec of the fleet host --host names, for the commands that work on one host."""
    wanted = getattr(args, "fleet_host", None)
    if wanted is None:
        what = "--preview" if getattr(args, "preview", False) else f"`bgdeploy {command}`"
        known = ", ".join(m.label for m in members(loaded.spec))
        raise UsageError(f"{what} works on one host of a fleet at a time: add --host LABEL (one of {known})")
    member = select(members(loaded.spec), wanted)[0]
    return dataclasses.replace(loaded, spec=member.spec)


def run(args: argparse.Namespace, command: str, loaded: LoadedSpec) -> int:
    """plan, deploy or rollback on the fleet (or on the one host --host names)."""
    chosen = select(members(loaded.spec), getattr(args, "fleet_host", None))
    signal.signal(signal.SIGTERM, _interrupt)
    result: FleetResult | None = None
    try:
        with open_fleet(loaded, chosen, command) as fleet:
            result = fleet.result
            if command == "plan":
                plan_fleet(fleet)
                _print_plan(fleet.result)
            else:
                lock_all(fleet, lock_wait=args.lock_wait, unlock=args.force_unlock)
                try:
                    if command == "deploy":
                        deploy_fleet(fleet, force=args.force)
                    else:
                        rollback_fleet(fleet)
                finally:
                    release_all(fleet)
    except FleetBlocked as blocked:
        result = blocked.fleet.result
    finally:
        if result is not None:
            _write_outputs(args, result)
    assert result is not None
    print(render_text(result))
    return EXIT_DEPLOY_FAILED if result.outcome in FAILED else EXIT_OK


def _write_outputs(args: argparse.Namespace, result: FleetResult) -> None:
    # Files do not pass the masking stdout/stderr: mask here, as the single-host outputs do (a host's failure
    # can quote a container log line with a secret_env value or the API key).
    from bgdeploy.untrusted.secrets import mask, mask_json

    if getattr(args, "json", None) == "-":  # `--json` alone: the JSON on stdout, as for one host
        sys.stdout.write(mask_json(result.to_json()))
    elif getattr(args, "json", None):
        Path(args.json).write_text(mask_json(result.to_json()))
    if getattr(args, "report", None):
        Path(args.report).write_text(mask(render_fleet(result)))


def _print_plan(result: FleetResult) -> None:
    for host in result.hosts:
        single = host.result
        live = host.before
        print(f"{host.label}: live: {f'{live.colour}: {live.model} ({live.image})' if live else 'nothing'}")
        plan = single.plan if single else None
        if plan is not None:
            for change in plan.changes:
                print(f"{host.label}: change: {change.what}: {change.before} -> {change.after}")
            for number, step in enumerate(plan.steps, start=1):
                print(f"{host.label}: {step.render(number)}")
        for blocker in host.blockers:
            print(f"{host.label}: blocker: {blocker}")
    for number, batch in enumerate(result.batches, start=1):
        print(f"batch {number}: {', '.join(batch)}")


def status(args: argparse.Namespace, loaded: LoadedSpec) -> int:
    """`bgdeploy status` on the fleet: each host's status and whether they serve the same release."""
    from bgdeploy.report.status import render_status

    chosen = select(members(loaded.spec), getattr(args, "fleet_host", None))
    data: dict[str, Any]
    try:
        with open_fleet(loaded, chosen, "status", stream=sys.stderr) as fleet:
            data = status_fleet(fleet)
    except FleetBlocked as blocked:
        data = {
            "name": loaded.spec.name,
            "hosts": {},
            "unreachable": {h.label: h.blockers for h in blocked.fleet.result.hosts if h.blockers},
        }
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        for label, host in data["hosts"].items():
            print(f"== {label}")
            print(f"error: {host['error']}" if "error" in host else render_status(host))
        for label, why in data.get("unreachable", {}).items():
            print(f"== {label}\nunreachable: {'; '.join(why)}")
        if data.get("hosts") and not data.get("converged", True):
            releases = ", ".join(f"{k}: {v or 'nothing'}" for k, v in data["releases"].items())
            print(f"the hosts serve different releases ({releases}); the next deploy converges them")
    bad = data.get("unreachable") or any(
        "error" in h or h.get("router", {}).get("problems") for h in data["hosts"].values()
    )
    return EXIT_DEPLOY_FAILED if bad else EXIT_OK


def history(args: argparse.Namespace, loaded: LoadedSpec) -> int:
    """`bgdeploy history` on the fleet: each host's last entries (fleet deploys name their batch)."""
    from bgdeploy.lifecycle.history import render
    from bgdeploy.lifecycle.listing import read_history

    chosen = select(members(loaded.spec), getattr(args, "fleet_host", None))
    hosts: dict[str, dict[str, Any]] = {}
    try:
        with open_fleet(loaded, chosen, "history", stream=sys.stderr) as fleet:
            for node in fleet.nodes:  # a few small reads each: one after the other is quick enough
                session = node.session
                try:
                    entries = read_history(session.host, session.layout, args.n)
                except BgdeployError as exc:  # one host's connection dropped: the others' history still shows
                    hosts[node.member.label] = {"host": session.host.description, "error": str(exc)}
                    continue
                hosts[node.member.label] = {"host": session.host.description, "history": entries}
    except FleetBlocked as blocked:
        for h in blocked.fleet.result.hosts:
            if h.blockers:
                hosts[h.label] = {"host": h.address, "error": "; ".join(h.blockers)}
    if args.json is None:
        for label, data in hosts.items():
            print(f"== {label}")
            print(
                f"unreachable: {data['error']}"
                if "error" in data
                else render(data["history"], loaded.spec.name, data["host"])
            )
    else:
        text = json.dumps({"name": loaded.spec.name, "hosts": hosts}, indent=2, default=str) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    return EXIT_DEPLOY_FAILED if any("error" in d for d in hosts.values()) else EXIT_OK
