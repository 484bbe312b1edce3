"""The structured result of a fleet command (`--json`): one entry per host, from which the report is made."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bgdeploy.plan.result import Result
from bgdeploy.plan.state import Release

# untouched: this command changed nothing there (not reached, or another batch stopped the rollout first).
HostOutcome = Literal[
    "deployed", "unchanged", "failed", "rolled-back", "untouched", "blocked", "planned", "paused", "previewed"
]
FleetOutcome = Literal["deployed", "unchanged", "partial", "failed", "rolled-back", "planned", "blocked", "paused"]


@dataclass
class HostReport:
    label: str
    address: str
    batch: int | None = None  # 1-based; None: not in any batch (unchanged, or not selected)
    outcome: HostOutcome = "untouched"
    before: Release | None = None
    after: Release | None = None
    result: Result | None = None  # this command's single-host result on the host
    rollback: Result | None = None  # the fleet rollback of this host, when the rollout was stopped
    blockers: list[str] = field(default_factory=list)
    failure: str | None = None
    seconds: float = 0.0


@dataclass
class FleetResult:
    command: str
    name: str
    outcome: FleetOutcome = "failed"
    hosts: list[HostReport] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)  # labels, batch by batch
    failure: str | None = None
    warnings: list[str] = field(default_factory=list)
    started_at: str = ""
    duration_s: float = 0.0
    figures: dict[str, float] = field(default_factory=dict)

    def host(self, label: str) -> HostReport:
        return next(h for h in self.hosts if h.label == label)

    def labels(self, *outcomes: str) -> list[str]:
        return [h.label for h in self.hosts if h.outcome in outcomes]

    @property
    def hosts_deployed(self) -> list[str]:
        return self.labels("deployed")

    @property
    def hosts_failed(self) -> list[str]:
        return [h.label for h in self.hosts if h.outcome in ("failed", "blocked") or h.failure]

    def releases_before(self) -> dict[str, str]:
        """Each host's live model before this command ("nothing" when none was live)."""
        return {h.label: (h.before.model if h.before else "nothing") for h in self.hosts}

    def to_json(self) -> str:
        data = asdict(self)
        data["hosts_deployed"] = self.hosts_deployed
        data["hosts_failed"] = self.hosts_failed
        return json.dumps(data, indent=2, sort_keys=True, default=_default) + "\n"


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
