"""A sampled slice of the fault matrix (the whole of it: bench/faults.py), in both router modes.

One deployment per router mode; each cell deploys the next version with a fault at a step boundary under
plain and streaming traffic, then the next run converges. tests/faults/harness.py says what is asserted.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from bgdeploy.plan.boundaries import AbortPhase, CanaryPhase, PromotePhase, RollbackPhase
from bgdeploy.plan.steps import StepKind
from tests.faults.harness import BOUNDARIES, FAULTS, Cell, applies, run_cell, table
from tests.integration.conftest import Testbed
from tests.integration.deployments import Deployment, ok
from tests.integration.test_host_router import host_nginx

pytestmark = pytest.mark.integration

# (boundary, fault): the riskiest instants: the switch, after it, after retire, and the bookkeeping.
CONTAINER_SLICE = [
    ("switch", "kill-at-reload"),
    ("record", "write-fail"),
    ("smoke", "green-dies"),
    ("switch", "live-restart"),
]
# Kills cost a stale-lock wait (45 s) each: one kill (at the reload itself) in the container slice is enough.
# ("bake", "green-dies") with rollout.bake 0: the new colour dies right after the switch; the old one must
# not be drained and retired (found by the matrix: it used to leave nothing alive).
HOST_SLICE = [("record", "write-fail"), ("switch", "live-restart"), ("bake", "green-dies")]
# The other commands' boundaries, one fault each (container mode): the rollback killed before its switch
# (the retry waits for the stale lock), the promote's state write failing, the abort's reload failing.
COMMAND_SLICE = [("rollback:switch", "kill"), ("promote:resume", "write-fail"), ("abort:undo", "reload-fail")]


class MatrixDeployment(Deployment):
    """A deployment named fm-..., kept stopped on retire (the hardest case for undo), in either router mode."""

    host_mode = False

    def spec(self, model: str = "acme/chat-v1", env: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        data = super().spec(model, env, **extra)
        data["rollout"]["keep_previous"] = "stopped"
        if self.host_mode:
            data["target"] = {"transport": "local"}
            data["router"] = {"mode": "host", "listen": self.port, "bind": "127.0.0.1"}
        return data

    def state_dir(self) -> Path:
        return Path.home() / ".bgdeploy" / self.name if self.host_mode else super().state_dir()

    def cleanup(self) -> None:
        super().cleanup()
        if self.host_mode:
            for path in Path("/etc/nginx/conf.d").glob(f"*{self.name}*"):
                path.unlink()
            subprocess.run(["nginx", "-s", "reload"], check=False, timeout=30)


def _deployment(testbed: Testbed, docker: Any, tmp_path: Path, host_mode: bool) -> MatrixDeployment:
    dep = MatrixDeployment(testbed, tmp_path, docker)
    dep.name = "fm" + dep.name[1:]
    dep.host_mode = host_mode
    return dep


@pytest.fixture
def container_dep(testbed: Testbed, docker_client: Any, tmp_path: Path) -> Iterator[MatrixDeployment]:
    dep = _deployment(testbed, docker_client, tmp_path, False)
    yield dep
    dep.cleanup()


@pytest.fixture
def host_dep(testbed: Testbed, docker_client: Any, tmp_path: Path, host_nginx: None) -> Iterator[MatrixDeployment]:
    dep = _deployment(testbed, docker_client, tmp_path, True)
    yield dep
    dep.cleanup()


def test_the_slices_name_real_boundaries_and_faults() -> None:
    for boundary, fault in CONTAINER_SLICE + HOST_SLICE + COMMAND_SLICE:
        assert boundary in BOUNDARIES and fault in FAULTS and applies(boundary, fault)


def test_every_command_s_boundaries_are_rows_of_the_matrix() -> None:
    for command, phases in {
        "rollback": get_args(RollbackPhase),
        "promote": get_args(PromotePhase),
        "abort": get_args(AbortPhase),
        "canary": get_args(CanaryPhase),
    }.items():
        assert {f"{command}:{phase}" for phase in phases} <= set(BOUNDARIES)
    assert set(get_args(StepKind)) <= set(BOUNDARIES)


def _run(dep: MatrixDeployment, docker: Any, cells: list[tuple[str, str]]) -> list[Cell]:
    dep.write("acme/chat-v1")
    ok(dep.run("deploy"))
    results = [run_cell(dep, docker, boundary, fault, version) for version, (boundary, fault) in enumerate(cells, 2)]
    print("\n" + table(results))
    for cell in results:
        assert cell.converged, f"{cell.boundary}/{cell.fault} did not converge:\n{cell.detail}"
        assert cell.failed == 0, f"{cell.boundary}/{cell.fault}: {cell.failed} client failures: {cell.failures[:5]}"
    return results


def test_fault_slice_container_router(container_dep: MatrixDeployment, docker_client: Any) -> None:
    _run(container_dep, docker_client, CONTAINER_SLICE)


def test_fault_slice_rollback_promote_abort_container_router(
    container_dep: MatrixDeployment, docker_client: Any
) -> None:
    _run(container_dep, docker_client, COMMAND_SLICE)


def test_fault_slice_host_router(host_dep: MatrixDeployment, docker_client: Any) -> None:
    _run(host_dep, docker_client, HOST_SLICE)


__all__ = ["host_nginx"]
