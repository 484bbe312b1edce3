"""`bgdeploy capture status|purge`: what the router has captured on the host (sizes and counts, never
content), and deleting it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bgdeploy.capture import keeper
from bgdeploy.report.status import human_size as _size


def run(args: argparse.Namespace) -> int:
    from bgdeploy.execute.commands import open_session
    from bgdeploy.spec import load_spec

    loaded = load_spec(args.file)
    with open_session(loaded, "capture") as session:
        if args.action == "purge":
            keeper.purge_files(session)
            print(f"capture: deleted every captured request of {loaded.spec.name} on {session.host.description}")
            if keeper.capture_settings(session) is not None:
                print("capture is still on: the router keeps capturing; remove validation.replay.capture to stop it")
            return 0
        found = keeper.status(session)
        description = session.host.description
    if args.json is not None:
        text = json.dumps({"name": loaded.spec.name, "host": description, **found.to_json()}, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
        return 0
    state = "on" if found.enabled else "off"
    bound = f" of at most {_size(found.max_bytes)}" if found.max_bytes is not None else ""
    print(f"capture {state} for {loaded.spec.name} on {description}: keeper {found.keeper}")
    print(f"stored: {found.requests} request(s), {_size(found.bytes_stored)}{bound}, in {found.directory} (mode 0600)")
    return 0
