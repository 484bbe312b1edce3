"""Deploys on the testbed under steady client traffic, and the figures of each cutover.

Prints, per deploy and overall: requests sent and failed; switch latency (from the switch decision until
every new request is served by the new colour); orchestration overhead (deploy wall time minus model
load, validation and bake; target under 2 s); SSH connections opened per deploy (target 1).

Needs the testbed: scripts/testbed up && eval "$(scripts/testbed env)" && .venv/bin/python bench/cutover.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from traffic import Traffic  # a sibling script, not a package

ROOT = Path(__file__).resolve().parents[1]
SSHD_LOG = Path(os.environ.get("BGDEPLOY_TESTBED_DIR", "/var/lib/bgdeploy-testbed")) / "sshd.log"


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set: run `eval \"$(scripts/testbed env)\"` first")
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ssh_logins() -> int:
    try:
        return SSHD_LOG.read_text(errors="replace").count("Accepted publickey for")
    except OSError:
        return -1


def spec(name: str, port: int, model: str, load_seconds: float) -> dict[str, Any]:
    return {
        "version": 1,
        "name": name,
        "target": {"host": env("BGDEPLOY_TESTBED_HOST"), "port": int(env("BGDEPLOY_TESTBED_PORT")),
                   "user": env("BGDEPLOY_TESTBED_USER"), "host_key": env("BGDEPLOY_TESTBED_HOST_KEY")},
        "model": {"name": model, "served_name": "chat"},
        "runtime": {"image": env("BGDEPLOY_TESTBED_FAKEVLLM_IMAGE"),
                    "env": {"FAKEVLLM_LOAD_SECONDS": str(load_seconds)}},
        "gpus": {"blue": [], "green": []},
        "router": {"image": env("BGDEPLOY_TESTBED_NGINX_IMAGE"), "listen": port, "bind": "127.0.0.1"},
        "health": {"interval": "250ms"},
        "validation": {"prompts": [{"name": "capital", "chat": "What is the capital of France?",
                                    "expect": {"contains": "Paris"}}]},
        "rollout": {"smoke": ["capital"], "bake": "2s", "drain_timeout": "10s"},
    }


def deploy(workdir: Path, data: dict[str, Any]) -> tuple[dict[str, Any], float, int]:
    path = workdir / "bluegreen.yaml"
    path.write_text(yaml.safe_dump(data))
    out = workdir / "result.json"
    logins = ssh_logins()
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bgdeploy", "deploy", "-f", str(path), "--json", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"deploy failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(out.read_text()), wall, ssh_logins() - logins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploys", type=int, default=3)
    parser.add_argument("--load-seconds", type=float, default=2.0)
    args = parser.parse_args()
    name = f"bench-{os.getpid()}"
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bgdeploy-bench-"))
    rows = []
    try:
        deploy(workdir, spec(name, port, "acme/chat-v1", args.load_seconds))
        for i in range(args.deploys):
            old, new = f"acme/chat-v{i + 1}", f"acme/chat-v{i + 2}"
            traffic = Traffic(f"http://127.0.0.1:{port}", max_seconds=300).start()
            time.sleep(1.0)  # let traffic settle on the old colour before the deploy begins
            result, wall, logins = deploy(workdir, spec(name, port, new, args.load_seconds))
            time.sleep(1.0)
            traffic.stop()
            phases: dict[str, float] = {}
            for phase in result["phases"]:
                phases[phase["name"]] = phases.get(phase["name"], 0.0) + phase["seconds"]
            decided = result["figures"]["switch_decided_monotonic"]
            last_old = max((t for t, m in traffic.answers if m == old), default=decided)
            rows.append({
                "deploy": f"{old} -> {new}",
                "sent": traffic.sent,
                "failed": len(traffic.failures),
                "switch_latency_s": max(0.0, last_old - decided),
                "overhead_s": wall - phases.get("wait-ready", 0) - phases.get("validate", 0) - phases.get("bake", 0),
                "wall_s": wall,
                "ssh_connections": logins,
            })
    finally:
        subprocess.run([sys.executable, "-c", CLEANUP, name], check=False, timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'deploy':<28} {'sent':>6} {'failed':>6} {'switch':>8} {'overhead':>9} {'wall':>7} {'ssh':>4}")
    for r in rows:
        print(f"{r['deploy']:<28} {r['sent']:>6} {r['failed']:>6} {r['switch_latency_s']:>7.3f}s "
              f"{r['overhead_s']:>8.2f}s {r['wall_s']:>6.2f}s {r['ssh_connections']:>4}")
    sent = sum(r["sent"] for r in rows)
    failed = sum(r["failed"] for r in rows)
    overhead = statistics.median(r["overhead_s"] for r in rows)
    print(f"total: {sent} requests, {failed} failed; median switch latency "
          f"{statistics.median(r['switch_latency_s'] for r in rows):.3f}s; median orchestration overhead "
          f"{overhead:.2f}s (target < 2s: {'met' if overhead < 2 else 'MISSED'}); SSH connections per deploy: "
          f"{sorted({r['ssh_connections'] for r in rows})} (target 1)")
    return 0 if failed == 0 else 1


CLEANUP = """
import sys, docker, shutil
name = sys.argv[1]
client = docker.from_env()
for c in client.containers.list(all=True, filters={"label": f"dev.bgdeploy.name={name}"}):
    c.remove(force=True)
for n in client.networks.list(names=[f"bgdeploy-{name}"]):
    n.remove()
shutil.rmtree(f"/home/bgdeploy/.bgdeploy/{name}", ignore_errors=True)
"""

if __name__ == "__main__":
    raise SystemExit(main())
