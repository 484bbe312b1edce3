"""The whole fault matrix on the testbed: every step boundary of a deploy (from the plan's own step list) and
every phase of rollback, promote, abort and a canary step (bgdeploy/plan/boundaries.py: `COMMAND:PHASE`)
times every fault, in both router modes, under plain and streaming traffic. Prints one table per mode
(rows: boundaries; columns: faults; cells: requests, failed (failed on what the fault killed), converged).

The sampled slice of it runs in the test suite (tests/faults/test_fault_matrix.py); this runs all of it,
which takes long (a killed run's lock is taken over only after it is seen stale, 45 s). `--dockerd` adds
the dockerd-restart column: it restarts the testbed's Docker daemon, so never run it while others use it.

    eval "$(scripts/testbed env)" && .venv/bin/python bench/faults.py [--mode container|host|both]
        [--faults kill,drop,...] [--boundaries switch,bake,...] [--dockerd] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.harness import BOUNDARIES, FAULTS, Cell, applies, run_cell, table  # noqa: E402
from tests.faults.test_fault_matrix import MatrixDeployment  # noqa: E402
from tests.integration.conftest import Testbed  # noqa: E402


def testbed() -> Testbed:
    def env(name: str) -> str:
        value = os.environ.get(name)
        if not value:
            raise SystemExit(f'{name} is not set: run `eval "$(scripts/testbed env)"` first')
        return value

    return Testbed(
        host=env("BGDEPLOY_TESTBED_HOST"),
        port=int(env("BGDEPLOY_TESTBED_PORT")),
        user=env("BGDEPLOY_TESTBED_USER"),
        key_file=env("BGDEPLOY_SSH_KEY_FILE"),
        host_key=env("BGDEPLOY_TESTBED_HOST_KEY"),
        fakevllm_image=env("BGDEPLOY_TESTBED_FAKEVLLM_IMAGE"),
        nginx_image=env("BGDEPLOY_TESTBED_NGINX_IMAGE"),
    )


def restart_dockerd() -> None:
    """Stop the testbed's dockerd (SIGTERM: containers stop) and start it as `scripts/testbed up` does; wait
    until it answers. `unless-stopped` brings the colours and the router back."""
    import signal

    import docker

    state = Path(os.environ.get("BGDEPLOY_TESTBED_DIR", "/var/lib/bgdeploy-testbed"))
    pid_file = state / "dockerd.pid"
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    with open(state / "dockerd.log", "ab") as log:
        started = subprocess.Popen(
            ["setsid", "dockerd", "--iptables=false"], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
    pid_file.write_text(f"{started.pid}\n")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            docker.from_env(timeout=10).ping()
            return
        except Exception:
            time.sleep(0.5)


def host_nginx_running() -> bool:
    try:
        pid = int(Path("/run/nginx.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    return Path(f"/proc/{pid}").exists()


def run_mode(mode: str, faults: list[str], boundaries: list[str], dockerd: bool) -> list[Cell]:
    import docker

    if mode == "host" and not host_nginx_running():
        subprocess.run(["nginx"], check=True, timeout=30)  # the host's own nginx, as the testbed installs it
    client = docker.from_env(timeout=60)
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory() as tmp:
        dep = MatrixDeployment(testbed(), Path(tmp), client)
        dep.name = "fb" + dep.name[1:]
        dep.host_mode = mode == "host"
        try:
            dep.write("acme/chat-v1")
            first = dep.run("deploy")
            if first.returncode != 0:
                raise SystemExit(f"the first deploy failed:\n{first.stderr}")
            version = 2
            for boundary in boundaries:
                for fault in faults:
                    if not applies(boundary, fault) or (fault == "dockerd-restart" and not dockerd):
                        continue
                    cell = run_cell(dep, client, boundary, fault, version, restart_dockerd=restart_dockerd)
                    version += 1
                    cells.append(cell)
                    print(f"{mode:9} {boundary:12} {fault:15} {cell.row()}", flush=True)
                    if not cell.converged:
                        print(cell.detail[-1500:], flush=True)
        finally:
            dep.cleanup()
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("container", "host", "both"), default="both")
    parser.add_argument("--faults", default=",".join(f for f in FAULTS if f != "dockerd-restart"))
    parser.add_argument("--boundaries", default=",".join(BOUNDARIES))
    parser.add_argument("--dockerd", action="store_true", help="also restart dockerd (never on a shared testbed)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    if args.dockerd and "dockerd-restart" not in faults:
        faults.append("dockerd-restart")
    boundaries = [b for b in args.boundaries.split(",") if b]
    unknown = [f for f in faults if f not in FAULTS] + [b for b in boundaries if b not in BOUNDARIES]
    if unknown:
        raise SystemExit(f"unknown fault or boundary: {', '.join(unknown)}")
    results: dict[str, list[Cell]] = {}
    for mode in ("container", "host") if args.mode == "both" else (args.mode,):
        results[mode] = run_mode(mode, faults, boundaries, args.dockerd)
    bad = 0
    for mode, cells in results.items():
        print(f"\n== router.mode: {mode}\n{table(cells)}")
        bad += sum(1 for c in cells if c.failed or not c.converged)
    if args.json:
        args.json.write_text(json.dumps({m: [asdict(c) for c in cs] for m, cs in results.items()}, indent=2))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
