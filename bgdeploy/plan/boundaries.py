"""The step boundaries of every command that changes what the router serves, from one list each.

A deploy's boundaries are its plan's steps (`StepKind`). Rollback, promote, abort and each canary step name
their phases here: the code enters a phase only through these names (mypy checks it), and the fault matrix
(tests/faults, bench/faults.py) takes its rows from `BOUNDARIES`, so a new phase is covered automatically.
A boundary's failpoint is `before:COMMAND:PHASE` (`before:STEP` for a deploy step).
"""

from __future__ import annotations

from typing import Literal, get_args

from bgdeploy.plan.steps import StepKind

RollbackPhase = Literal["observe", "start", "wait-ready", "switch", "drain", "retire", "record"]
# Promote rebuilds the paused cycle, records that it goes on, then runs the deploy's own steps from `switch`
# (their boundaries are the deploy's, `before:STEP`, and the canary steps').
PromotePhase = Literal["observe", "resume"]
AbortPhase = Literal["observe", "start", "undo", "clear"]
# Each canary step: its position is written, the weights are applied, then its traffic is watched.
CanaryPhase = Literal["record", "weights", "watch"]

Command = Literal["deploy", "rollback", "promote", "abort", "canary"]

BOUNDARIES: dict[Command, tuple[str, ...]] = {
    "deploy": get_args(StepKind),
    "rollback": get_args(RollbackPhase),
    "promote": get_args(PromotePhase),
    "abort": get_args(AbortPhase),
    "canary": get_args(CanaryPhase),
}


def point(command: Command, phase: str) -> str:
    """The failpoint name of a boundary: `before:STEP` for a deploy step, `before:COMMAND:PHASE` otherwise."""
    return f"before:{phase}" if command == "deploy" else f"before:{command}:{phase}"


def all_boundaries() -> tuple[str, ...]:
    """Every boundary as the matrix names its rows: `STEP` for a deploy step, `COMMAND:PHASE` otherwise."""
    return tuple(p if c == "deploy" else f"{c}:{p}" for c, phases in BOUNDARIES.items() for p in phases)
