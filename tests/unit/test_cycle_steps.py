"""The deploy cycle's step table: every kind of step the planner can emit has exactly one method."""

from __future__ import annotations

from typing import get_args

from bgdeploy.execute.deploy import STEPS
from bgdeploy.plan.steps import StepKind


def test_every_step_kind_has_a_method() -> None:
    assert list(STEPS) == list(get_args(StepKind))
