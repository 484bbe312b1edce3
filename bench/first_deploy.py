"""Time from a fresh checkout to a first deploy on the testbed, the way the README walks a new user there.

Steps, each timed: clone the repository into a temp dir (git clone of this checkout's HEAD, or --source),
`scripts/setup-python` there (a fresh .venv; pip downloads from PyPI with no cache, as on a fresh machine),
`scripts/testbed up` (idempotent: where the testbed is already up this is the time of the check, not of a
first install, and the table says so), `bgdeploy init USER@HOST:PORT --yes` against the testbed, the one edit
the testbed needs (its stand-in model and router images: it has no registry and no GPU), `bgdeploy validate`,
`bgdeploy plan`, and the first `bgdeploy deploy` of the spec as init wrote it (its 60 s bake included unless
--bake says otherwise). Then `bgdeploy remove --yes` and the temp dir go, on failure too.

Needs root and the testbed (`scripts/testbed up`). A bench, not a test. Usage:
    python bench/first_deploy.py [--source REPO] [--bake DURATION] [--pip-cache] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TAIL = 2000  # characters of a failed step's output shown


class StepFailed(Exception):
    pass


@dataclass
class Run:
    steps: list[tuple[str, float, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def step(self, label: str, argv: list[str], *, cwd: Path, timeout: float, note: str = "") -> str:
        print(f"-- {label}: {' '.join(argv)}", flush=True)
        start = time.perf_counter()
        try:
            done = subprocess.run(
                argv,
                cwd=cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StepFailed(f"{label}: still running after {timeout:.0f}s") from exc
        elapsed = time.perf_counter() - start
        self.steps.append((label, elapsed, note))
        out = done.stdout + done.stderr
        if done.returncode != 0:
            raise StepFailed(f"{label}: exit {done.returncode} after {elapsed:.1f}s\n{out[-TAIL:]}")
        return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def testbed_env(repo: Path) -> dict[str, str]:
    """The `export` lines of `scripts/testbed env`, as `eval "$(scripts/testbed env)"` would set them."""
    out = subprocess.run(
        [str(repo / "scripts/testbed"), "env"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export ") :].split("=", 1)
            env[key] = value.strip("'")
    return env


def adapt_to_testbed(spec_path: Path, env: dict[str, str], bake: str | None) -> None:
    """The testbed's stand-ins: its fake vLLM image for the model, its nginx image for the router."""
    spec = yaml.safe_load(spec_path.read_text())
    spec["runtime"]["image"] = env["BGDEPLOY_TESTBED_FAKEVLLM_IMAGE"]
    spec["router"]["image"] = env["BGDEPLOY_TESTBED_NGINX_IMAGE"]
    if bake is not None:
        spec["rollout"]["bake"] = bake
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))


def table(run: Run, first_deploy_steps: int, *, failed: bool) -> str:
    rows = [f"{'step':<34} {'seconds':>8}  note"]
    for label, seconds, note in run.steps:
        rows.append(f"{label:<34} {seconds:8.1f}  {note}")
    to_deploy = sum(seconds for _, seconds, _ in run.steps[:first_deploy_steps])
    label = "total until the failure" if failed else "total: fresh clone to first deploy"
    rows.append(f"{label:<34} {to_deploy:8.1f}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(ROOT), help="the repository to clone (default: this checkout)")
    parser.add_argument("--bake", help="override the spec's rollout.bake (default: init's 60s, as a user gets)")
    parser.add_argument("--pip-cache", action="store_true", help="let pip use its cache (default: none, as fresh)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (the deployment is still removed)")
    args = parser.parse_args()

    run = Run()
    if not args.pip_cache:
        run.env["PIP_NO_CACHE_DIR"] = "1"
    name = f"first-{random.randrange(10000):04d}"
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="bgdeploy-first-"))
    repo = work / "bgdeploy"
    spec = work / "bluegreen.yaml"
    bgdeploy = str(repo / ".venv/bin/bgdeploy")
    deployed = False
    steps_to_deploy = 0
    failure = ""
    try:
        run.step("git clone", ["git", "clone", "--quiet", args.source, str(repo)], cwd=work, timeout=300)
        run.step("scripts/setup-python (venv+pip)", ["scripts/setup-python"], cwd=repo, timeout=900)
        run.step(
            "scripts/testbed up",
            ["scripts/testbed", "up"],
            cwd=repo,
            timeout=1800,
            note="already up here: the idempotent check, not a first install",
        )
        tb = testbed_env(repo)
        run.env.update(tb)  # eval "$(scripts/testbed env)": BGDEPLOY_SSH_KEY_FILE among them
        address = f"{tb['BGDEPLOY_TESTBED_USER']}@{tb['BGDEPLOY_TESTBED_HOST']}:{tb['BGDEPLOY_TESTBED_PORT']}"
        init_argv = [bgdeploy, "init", address, "--yes", "-o", str(spec), "--name", name, "--listen", str(port)]
        run.step("bgdeploy init --yes", init_argv, cwd=work, timeout=120)
        start = time.perf_counter()
        adapt_to_testbed(spec, tb, args.bake)
        run.steps.append(("edit: testbed images", time.perf_counter() - start, "runtime.image, router.image"))
        run.step("bgdeploy validate", [bgdeploy, "validate", "-f", str(spec)], cwd=work, timeout=60)
        run.step("bgdeploy plan", [bgdeploy, "plan", "-f", str(spec)], cwd=work, timeout=120)
        deployed = True  # from here on, something may be on the host
        bake = args.bake or "60s"
        run.step(
            "bgdeploy deploy (first)",
            [bgdeploy, "deploy", "-f", str(spec)],
            cwd=work,
            timeout=900,
            note=f"{name} on 127.0.0.1:{port}, bake {bake} included",
        )
        steps_to_deploy = len(run.steps)
    except StepFailed as exc:
        failure = str(exc)
    finally:
        if deployed:
            try:
                run.step("bgdeploy remove --yes", [bgdeploy, "remove", "--yes", "-f", str(spec)], cwd=work, timeout=300)
            except StepFailed as exc:
                failure += f"\ncleanup: {exc} (remove it by hand: bgdeploy remove --yes --name {name} -f ...)"
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(table(run, steps_to_deploy or len(run.steps), failed=bool(failure)))
    if failure:
        print(f"\nFAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
