"""The structured result of a command (`--json`), from which reports and GitHub comments are rendered."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bgdeploy.analysis.prometheus import QueryLook
from bgdeploy.analysis.verdict import LiveOutcome, LiveVerdict
from bgdeploy.plan.capture import ReplayResult
from bgdeploy.plan.evaluation import DatasetResult, LoadFigures
from bgdeploy.plan.state import Release
from bgdeploy.plan.steps import DeployPlan
from bgdeploy.plan.verdict import Check, Verdict
from bgdeploy.policy.evaluate import PolicyVerdict

Outcome = Literal[
    "deployed", "unchanged", "failed", "rolled-back", "planned", "previewed", "paused", "aborted", "invalid", "removed"
]


@dataclass
class Phase:
    name: str
    seconds: float
    outcome: Literal["ok", "failed", "skipped"]
    detail: str = ""


@dataclass
class CanaryRecord:
    """One canary step as it happened: the weight, how long it was held, and both colours' live figures."""

    step: int  # 1-based
    weight: int
    seconds: float
    new: LiveVerdict
    old: LiveVerdict | None
    verdict: LiveOutcome  # the new colour's outcome (the same as new.outcome)


@dataclass
class ModelPoint:
    """One colour's model metrics (vLLM /metrics) and error rate at one look of the bake or a canary step."""

    t_s: float  # since the watch began
    colour: str
    requests: int
    ttft_p95_s: float | None
    itl_p95_s: float | None
    queue_peak: float | None
    kv_cache: float | None
    error_rate: float | None


@dataclass
class Result:
    command: str
    name: str
    outcome: Outcome = "failed"
    active_colour: str | None = None
    previous_colour: str | None = None
    live_before: Release | None = None
    target: Release | None = None
    plan: DeployPlan | None = None
    phases: list[Phase] = field(default_factory=list)
    validation: Verdict | None = None
    live_validation: Verdict | None = None
    relative: list[Check] = field(default_factory=list)  # validation gates against the live colour
    datasets: list[DatasetResult] = field(default_factory=list)
    load_probe: list[LoadFigures] = field(default_factory=list)  # validation.load, one entry per colour
    replay: ReplayResult | None = None  # validation.replay: aggregates only, never a captured body
    model_series: list[ModelPoint] = field(default_factory=list)  # rollback_on model metrics, at each look
    prometheus: list[QueryLook] = field(default_factory=list)  # analysis.prometheus, each query at each look
    smoke: Verdict | None = None
    bake: LiveVerdict | None = None
    canary: list[CanaryRecord] = field(default_factory=list)
    paused: str | None = None
    failure: str | None = None
    failed_logs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    gpu_lines: list[str] = field(default_factory=list)
    policy: PolicyVerdict | None = None  # the host policy's verdict on the spec (plan, and every change)
    started_at: str = ""
    duration_s: float = 0.0
    figures: dict[str, float] = field(default_factory=dict)

    def phase_seconds(self, name: str) -> float:
        return sum(p.seconds for p in self.phases if p.name == name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=_default) + "\n"


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
