"""Fleet deploy time against one host, and the parallel preflight: figures, not a pass/fail test.

On the testbed's fleet hosts (`scripts/testbed up --hosts 4`): deploys v1 everywhere, then times the
deploy of v2 to every host with `rollout.fleet: {batch: N/2, first_batch: N/2}` (two batches) against the
same spec on one host (--host h1), and the preflight (`bgdeploy plan`: connect, observe, check) of all
hosts against one. Goals from issue #11: a 2-batch fleet deploy under 2.3x one host's; the preflight of
4 hosts under 1.3x one host's (it runs in parallel).

    scripts/testbed up --hosts 4 && eval "$(scripts/testbed env)" && .venv/bin/python bench/fleet.py
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [
    {"name": "capital", "chat": "What is the capital of France?", "expect": {"contains": "Paris"}},
    {"name": "sum", "chat": "What is 2+2?", "expect": {"regex": r"\b4\b"}},
]


def spec(name: str, hosts: list[str], port: int, model: str, load_seconds: str) -> dict[str, Any]:
    half = max(1, len(hosts) // 2)
    return {
        "version": 1,
        "name": name,
        "target": {
            "user": os.environ["BGDEPLOY_TESTBED_USER"],
            "host_key": os.environ["BGDEPLOY_TESTBED_HOST_KEY"],
            "hosts": [
                {"host": h.rsplit(":", 1)[0], "port": int(h.rsplit(":", 1)[1]), "label": f"h{i + 1}"}
                for i, h in enumerate(hosts)
            ],
        },
        "model": {"name": model, "served_name": "chat"},
        "runtime": {
            "image": os.environ["BGDEPLOY_TESTBED_FAKEVLLM_IMAGE"],
            "env": {"FAKEVLLM_LOAD_SECONDS": load_seconds},
        },
        "gpus": {"blue": [], "green": []},
        "router": {"image": os.environ["BGDEPLOY_TESTBED_NGINX_IMAGE"], "listen": port, "bind": "0.0.0.0"},
        "health": {"interval": "250ms", "ready_timeout": "120s"},
        "validation": {"concurrency": 2, "prompts": PROMPTS},
        "rollout": {
            "smoke": ["capital"],
            "bake": 0,
            "drain_timeout": "10s",
            "fleet": {"batch": half, "first_batch": half},
        },
    }


def run(path: Path, *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bgdeploy", *args, "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bgdeploy {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def cleanup(name: str, sockets: list[str], homes: list[str]) -> None:
    for sock in sockets:
        env = dict(os.environ, DOCKER_HOST=sock)
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=dev.bgdeploy.name={name}"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        ).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, env=env, check=False)
        subprocess.run(["docker", "network", "rm", f"bgdeploy-{name}"], capture_output=True, env=env, check=False)
    for home in homes:
        shutil.rmtree(Path(home) / ".bgdeploy" / name, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=4, help="fleet size (at most the testbed's fleet hosts)")
    parser.add_argument("--load-seconds", default="5", help="the stand-in model's loading time")
    args = parser.parse_args()
    hosts = os.environ.get("BGDEPLOY_TESTBED_HOSTS", "").split()
    sockets = os.environ.get("BGDEPLOY_TESTBED_HOSTS_DOCKER", "").split()
    homes = os.environ.get("BGDEPLOY_TESTBED_HOSTS_HOME", "").split()
    if len(hosts) < args.hosts:
        print(f"{len(hosts)} fleet host(s) up, {args.hosts} wanted: scripts/testbed up --hosts {args.hosts}")
        return 2
    hosts = hosts[: args.hosts]
    name = f"bench-fleet-{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="bgdeploy-fleet-"))
    path = work / "bluegreen.yaml"
    port = random.randint(30000, 39999)

    def write(model: str) -> None:
        path.write_text(yaml.safe_dump(spec(name, hosts, port, model, args.load_seconds), sort_keys=False))

    try:
        write("acme/chat-v1")
        run(path, "deploy")
        preflight_one = min(run(path, "plan", "--host", "h1") for _ in range(3))
        preflight_all = min(run(path, "plan") for _ in range(3))
        write("acme/chat-v2")
        one = run(path, "deploy", "--host", "h1")  # h1 on v2; the fleet deploy below moves the others
        write("acme/chat-v1")
        run(path, "deploy", "--host", "h1")  # back to v1, so the fleet deploy moves every host
        write("acme/chat-v2")
        report = work / "fleet.json"
        fleet = run(path, "deploy", "--json", str(report))
        data = json.loads(report.read_text())
        batches = len(data["batches"])
        print(f"hosts: {len(hosts)}, batches: {batches} ({data['batches']}), model load {args.load_seconds}s")
        print(f"deploy, 1 host:        {one:6.2f}s")
        print(
            f"deploy, {len(hosts)} hosts:       {fleet:6.2f}s  = {fleet / one:.2f}x one host "
            "(goal < 2.3x for 2 batches)"
        )
        print(f"preflight (plan), 1:   {preflight_one:6.2f}s")
        print(
            f"preflight (plan), {len(hosts)}:   {preflight_all:6.2f}s  = {preflight_all / preflight_one:.2f}x one host "
            "(goal < 1.3x)"
        )
        print(f"preflight inside the fleet deploy: {data['figures'].get('preflight_s', 0):.2f}s")
    finally:
        cleanup(name, sockets, homes)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
