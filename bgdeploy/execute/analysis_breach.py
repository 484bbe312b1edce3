"""The failure raised when a model-metrics or Prometheus limit breaks during a watch, with the traffic
figures of that moment, so a canary step can still be recorded as it happened."""

from __future__ import annotations

from bgdeploy.analysis.verdict import LiveVerdict
from bgdeploy.errors import DeployFailed


class AnalysisBreach(DeployFailed):
    """A limit of rollout.rollback_on (model metrics) or analysis.prometheus broke; live traffic goes back."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.new: LiveVerdict | None = None
        self.old: LiveVerdict | None = None
        self.seconds = 0.0

    def during(self, new: LiveVerdict, old: LiveVerdict | None, seconds: float) -> AnalysisBreach:
        self.new, self.old, self.seconds = new, old, seconds
        return self
