"""The one place that picks the analysis source for a deployment (as Argo's metricproviders switch does)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bgdeploy.analysis.access_log import AccessLogSource
from bgdeploy.analysis.source import TrafficSource

if TYPE_CHECKING:
    from bgdeploy.plan.names import Layout
    from bgdeploy.spec.models import Spec
    from bgdeploy.transports.base import Host


def access_log_path(layout: Layout) -> str:
    """The router's access log as the host sees it."""
    return f"{layout.router_logs}/access.log"


def traffic_source(spec: Spec, host: Host, layout: Layout) -> TrafficSource:
    """The source of live figures for this spec. Today every router writes the JSON access log."""
    return AccessLogSource(host, access_log_path(layout), spec.rollout.rollback_on.error_statuses)
