"""The fault matrix: at a step boundary of a deploy, rollback, canary step, promote or abort, inject a fault
while plain and streaming clients send requests through the router; then check what a user would notice,
and that the next run converges.

The boundaries come from the commands' own lists (bgdeploy/plan/boundaries.py: a deploy's are its plan's
`StepKind`, named `STEP`; the others' `COMMAND:PHASE`), so a new step or phase is covered automatically.
A deploy cell deploys the next version with the fault. A `rollback:` cell deploys the next version, then
rolls back with the fault. A `canary:` cell deploys the next version as a canary (paused after its step)
with the fault; a `promote:` or `abort:` cell deploys it as a canary first, then promotes or aborts with
the fault. The next run is the same command again, as a user would retry it; a canary still in progress
afterwards is aborted before the next cell (outside the cell's figures).
Faults: `kill` (SIGKILL of bgdeploy), `drop` (the SSH connection closes), `write-fail` (the next host
operation fails as on a full disk; at `record` the state write itself fails), `reload-fail` (`nginx -s
reload` fails), `green-dies` (the new colour's container is killed), `live-restart` (the live container is
restarted), `dockerd-restart` (the Docker daemon restarts; only bench/faults.py --dockerd, since tests share
one dockerd). Faults are injected through bgdeploy's failpoints (bgdeploy/execute/failpoints.py): `pause`
stops bgdeploy at the boundary while the harness acts on the host, then lets it go on.

Each cell asserts: no client request failed, except those on a colour the fault itself killed (counted
apart); after the next bgdeploy run (exit 0 or 1, no manual step) `status` judges the router healthy
(the loaded config names only running, healthy colours) and a request through it succeeds.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bgdeploy.plan.boundaries import all_boundaries
from tests.integration.conftest import REPO_ROOT

BOUNDARIES: tuple[str, ...] = all_boundaries()
FAULTS = (
    "kill",
    "kill-at-reload",
    "drop",
    "write-fail",
    "reload-fail",
    "green-dies",
    "live-restart",
    "dockerd-restart",
)
# A run killed (or cut off) holds the deploy lock until it is seen stale: the next run waits for that.
LOCK_WAIT = "90"
# Boundaries where a fault cannot act: nothing of the new colour runs yet, or the reload does not happen there.
NEEDS_NEW = ("wait-ready", "validate", "router", "switch", "smoke", "bake", "drain", "retire", "record")
PAUSED = ("green-dies", "live-restart", "dockerd-restart")
QUESTION = "What is the capital of France?"
RETRYABLE = "without sending a response"  # a keep-alive connection nginx closed as the request reused it


# The reload faults act at the reload itself, whatever the boundary: one cell per command, at its switch.
RELOAD_AT = ("switch", "rollback:switch", "promote:resume", "abort:undo", "canary:weights")
# What the canary cells deploy: one step, then a pause (auto_promote false) that promote or abort goes on from.
CANARY_ROLLOUT: dict[str, Any] = {
    "strategy": "canary",
    "steps": [{"weight": 50, "bake": "1s"}],
    "analysis_interval": "1s",
    "auto_promote": False,
    "rollback_on": {"min_requests": 1},
}


def command_of(boundary: str) -> str:
    """`deploy` for a deploy step, else the part before the colon (`canary` boundaries are in a deploy)."""
    return boundary.partition(":")[0] if ":" in boundary else "deploy"


def applies(boundary: str, fault: str) -> bool:
    if fault == "green-dies":
        return ":" in boundary or boundary in NEEDS_NEW
    if fault in ("reload-fail", "kill-at-reload"):
        return boundary in RELOAD_AT
    return True


@dataclass
class Cell:
    boundary: str
    fault: str
    requests: int = 0
    failed: int = 0  # failures a user would notice that the fault did not cause directly
    fault_failed: int = 0  # failed while on a colour the fault itself killed (or on the router the fault restarted)
    retried: int = 0  # keep-alive races, retried (at most twice each)
    exit_code: int | None = None  # the faulted run
    converge_code: int | None = None  # the next run
    converged: bool = False
    detail: str = ""
    failures: list[str] = field(default_factory=list)

    def row(self) -> str:
        mark = "ok" if self.converged and self.failed == 0 else "FAIL"
        return (
            f"{self.requests:>4} req {self.failed:>2} failed ({self.fault_failed} by fault, {self.retried} retried) "
            f"exit {self.exit_code}/{self.converge_code} {mark}"
        )


class Traffic:
    """Plain and streaming chats through the router, each failure attributed to the colour that answered."""

    def __init__(self, url: str, max_seconds: float = 300) -> None:
        self.url = url
        self.lock = threading.Lock()
        self.requests = 0
        self.retried = 0
        self.failures: list[tuple[str, str]] = []  # (colour that answered or "", what went wrong)
        self._stop = threading.Event()
        self._max = max_seconds
        self._threads = [threading.Thread(target=self._loop, args=(s,), daemon=True) for s in (False, True)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def wait_for_requests(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        start = self.requests
        while self.requests - start < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def _loop(self, stream: bool) -> None:
        deadline = time.monotonic() + self._max
        body = {
            "model": "chat",
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 32,
            "stream": stream,
        }
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for attempt in range(3):
                    colour, problem = self._one(client, body, stream)
                    if problem and RETRYABLE in problem and attempt < 2:
                        with self.lock:
                            self.retried += 1
                        continue
                    break
                with self.lock:
                    self.requests += 1
                    if problem:
                        self.failures.append((colour, f"{'stream' if stream else 'plain'}: {problem}"))
                time.sleep(0.02)

    def _one(self, client: httpx.Client, body: dict[str, Any], stream: bool) -> tuple[str, str | None]:
        colour = ""
        try:
            with client.stream("POST", f"{self.url}/v1/chat/completions", json=body) as response:
                colour = response.headers.get("x-bgdeploy-colour", "")
                text = "".join(response.iter_text())
        except httpx.HTTPError as exc:
            return colour, f"{type(exc).__name__}: {exc}"
        if response.status_code != 200:
            return colour, f"HTTP {response.status_code}"
        if stream and not text.rstrip().endswith("data: [DONE]"):
            return colour, "stream cut short"
        return colour, None


def _env(dep: Any, boundary: str, fault: str, folder: Path) -> dict[str, str]:
    points: dict[str, str] = {
        "kill": f"before:{boundary}=kill",
        "drop": f"before:{boundary}=drop",
        "write-fail": f"before:{boundary}=fail,state:write=fail",
        "reload-fail": "router:reload=fail",
        # Between the config's rename into place and nginx's reload: the file names what nginx never loaded.
        "kill-at-reload": "router:reload=kill",
    }.get(fault, f"before:{boundary}=pause")
    env = dep.environ()
    env["BGDEPLOY_FAILPOINTS"] = points
    env["BGDEPLOY_FAILPOINT_DIR"] = str(folder)
    return env


def _live_colour(dep: Any, docker: Any, model: str) -> tuple[str | None, str | None]:
    """(the colour running `model`, the other running colour) from the containers' labels."""
    new = old = None
    for colour in ("blue", "green"):
        try:
            container = docker.containers.get(f"bgdeploy-{dep.name}-{colour}")
        except Exception:
            continue
        if container.status != "running":
            continue
        if container.labels.get("dev.bgdeploy.model") == model:
            new = colour
        else:
            old = colour
    return new, old


def _act(dep: Any, docker: Any, fault: str, model: str, restart_dockerd: Any) -> set[str]:
    """Do the paused fault on the host; return the colours (or "router") it killed."""
    new, old = _live_colour(dep, docker, model)
    if fault == "green-dies" and new is not None:
        docker.containers.get(f"bgdeploy-{dep.name}-{new}").kill()
        return {new}
    if fault == "live-restart" and old is not None:
        docker.containers.get(f"bgdeploy-{dep.name}-{old}").restart(timeout=10)
        return {old}
    if fault == "dockerd-restart" and restart_dockerd is not None:
        restart_dockerd()
        return {"blue", "green", "router", ""}
    return set()


def _setup(dep: Any, boundary: str, version: int, timeout: float) -> tuple[list[str], str]:
    """Bring the host to where the boundary's command starts; (that command, the model its new colour runs)."""
    command = command_of(boundary)
    model = f"acme/chat-v{version}"
    canary = command in ("canary", "promote", "abort")
    dep.write(model, **({"rollout": {**dep.spec()["rollout"], **CANARY_ROLLOUT}} if canary else {}))
    if command in ("deploy", "canary"):
        return ["deploy"], model
    first = dep.run("deploy", timeout=timeout)
    if first.returncode != 0:
        raise AssertionError(
            f"{boundary}: the deploy before the faulted {command} failed:\n{first.stdout[-1500:]}{first.stderr[-1500:]}"
        )
    if command == "rollback":
        return ["rollback"], f"acme/chat-v{version - 1}"  # the colour a rollback makes live again
    return [command], model


def _settle(dep: Any, timeout: float) -> None:
    """A canary still in progress would refuse the next cell's deploy: abort it (outside the cell)."""
    try:
        in_progress = bool(json.loads((dep.state_dir() / "state.json").read_text()).get("canary"))
    except (OSError, ValueError):
        in_progress = False
    if in_progress:
        dep.run("abort", "--lock-wait", LOCK_WAIT, timeout=timeout)


def run_cell(
    dep: Any, docker: Any, boundary: str, fault: str, version: int, *, restart_dockerd: Any = None, timeout: float = 150
) -> Cell:
    """Run the boundary's command (see the module's docstring) towards acme/chat-v`version` with `fault` at
    `boundary`, then the same command again; the cell's figures."""
    cell = Cell(boundary, fault)
    folder = dep.workdir / f"fp-{version}"
    folder.mkdir(exist_ok=True)
    command, model = _setup(dep, boundary, version, timeout)
    pause = f"before:{boundary}".replace(":", "-")  # the file names failpoints.py's `pause` writes and waits for
    killed: set[str] = set()
    with Traffic(dep.url) as traffic:
        traffic.wait_for_requests(4)
        proc = subprocess.Popen(
            dep.command(*command, "--lock-wait", LOCK_WAIT),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(dep, boundary, fault, folder),
            cwd=REPO_ROOT,
        )
        try:
            if fault in PAUSED:
                reached = folder / f"{pause}.reached"
                deadline = time.monotonic() + timeout
                while not reached.exists() and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                if reached.exists():
                    killed = _act(dep, docker, fault, model, restart_dockerd)
                    traffic.wait_for_requests(4)
                (folder / f"{pause}.go").write_text("go")
            out, _ = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
        cell.exit_code = proc.returncode
        cell.detail = out[-2000:]
        # The next run, as a user would start it: the same command, no failpoints.
        again = dep.run(*command, "--lock-wait", LOCK_WAIT, timeout=timeout)
        cell.converge_code = again.returncode
        status = dep.run("status", timeout=60)
        served = _served(dep)
        cell.converged = again.returncode in (0, 1) and status.returncode == 0 and served
        if not cell.converged:
            cell.detail += (
                f"\n-- converge exit {again.returncode}:\n{again.stderr[-1500:]}\n-- status:\n{status.stdout}"
            )
        traffic.wait_for_requests(4)
    _settle(dep, timeout)
    cell.requests = traffic.requests
    cell.retried = traffic.retried
    for colour, problem in traffic.failures:
        if colour in killed or (not colour and killed):
            cell.fault_failed += 1
        else:
            cell.failed += 1
            cell.failures.append(f"{colour or '?'}: {problem}")
    return cell


def _served(dep: Any) -> bool:
    try:
        response = httpx.post(
            f"{dep.url}/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8},
            timeout=30,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def table(cells: list[Cell]) -> str:
    """Rows: boundaries; columns: faults; cells: requests/failed(by fault) and converged."""
    faults = [f for f in FAULTS if any(c.fault == f for c in cells)]
    by = {(c.boundary, c.fault): c for c in cells}
    width = 26
    first = max([len(c.boundary) for c in cells] + [12]) + 2
    lines = ["boundary".ljust(first) + "".join(f.ljust(width) for f in faults)]
    for boundary in BOUNDARIES:
        if not any((boundary, f) in by for f in faults):
            continue
        row = boundary.ljust(first)
        for fault in faults:
            c = by.get((boundary, fault))
            text = (
                "-" if c is None else f"{c.requests}r {c.failed}f({c.fault_failed}) {'conv' if c.converged else 'NOT'}"
            )
            row += text.ljust(width)
        lines.append(row)
    lines.append("cell: requests r, failed f (failed on what the fault killed), conv = next run converged")
    return "\n".join(lines)
