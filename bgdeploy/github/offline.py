"""The offline plan of a pull request: what a deploy of the PR's spec would change against the release that is
live as GitHub recorded it, without contacting the host (a PR run holds no key). Pure.

The steps come from the same planner as `bgdeploy plan`; the GPU fit is checked against the GPU facts the last
deploy recorded at its preflight, adjusted for what that deploy changed (its old colour's memory freed, its
new colour's held), and is marked as an estimate of that date.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal

from bgdeploy.github.deployments import Record
from bgdeploy.plan import gpu
from bgdeploy.plan.container import colour_gpus
from bgdeploy.plan.result import Result
from bgdeploy.plan.steps import HostView, plan_deploy
from bgdeploy.spec.models import Spec
from bgdeploy.untrusted.markdown import escape_inline

NOT_CONTACTED = "The host was not contacted: this plan comes from GitHub's record of the last successful deploy."


@dataclass(frozen=True)
class OfflinePlan:
    result: Result
    notes: list[str] = field(default_factory=list)  # markdown lines, already escaped


def held_mib(memory: str, usable_mib: int) -> int:
    """What vLLM allocates up front on a GPU: ceil(memory fraction × usable MiB); 0 for an unreadable fraction."""
    try:
        fraction = Decimal(memory)
    except ArithmeticError:
        return 0
    return math.ceil(fraction * usable_mib)


def gpus_now(record: Record) -> list[gpu.Gpu]:
    """The GPUs as the recorded deploy left them: at its preflight the old live colour held `bgdeploy_mib`;
    after it, the recorded release holds its fraction on its GPUs and the old colour's memory is free."""
    wanted = {int(i) for i in record.release.gpus.split(",") if i.strip().isdigit()}
    now: list[gpu.Gpu] = []
    for fact in record.gpus:
        others = max(0, fact.used_mib - fact.bgdeploy_mib)
        held = held_mib(record.release.memory, fact.usable_mib) if fact.index in wanted else 0
        used = min(fact.usable_mib, others + held)
        now.append(gpu.Gpu(fact.index, "", fact.name, fact.total_mib, used, fact.usable_mib - used))
    return now


def offline_plan(spec: Spec, spec_hash: str, record: Record | None, source: str) -> OfflinePlan:
    """The plan of `spec` against `record` (None: GitHub knows no earlier deployment). `source` says where the
    record came from (e.g. "GitHub deployment 42 of production"), shown in the notes."""
    result = Result(command="plan", name=spec.name, outcome="planned")
    notes = [f"🔌 {NOT_CONTACTED}" if record is not None else "🔌 The host was not contacted."]
    if record is None:
        notes.append(
            f"No earlier successful deployment of {escape_inline(spec.name, 60)} is recorded on GitHub "
            f"({escape_inline(source, 120)}): the plan below assumes nothing is live."
        )
    else:
        r = record.release
        notes.append(
            f"Live release as recorded at {escape_inline(record.recorded_at or r.deployed_at, 40)} "
            f"({escape_inline(source, 120)}): {r.colour} serves {escape_inline(r.model, 80)} "
            f"({escape_inline(r.image, 120)})."
        )
    live = record.release if record is not None else None
    view = HostView(
        live=live,
        live_running=live is not None,
        stale={},
        image_present=live is not None and live.image == spec.runtime.image,
        router_running=live is not None,
    )
    plan = plan_deploy(spec, spec_hash, view)
    blockers: list[str] = []
    wanted = colour_gpus(spec, plan.new_colour)
    if not plan.unchanged and wanted:
        if record is None or not record.gpus:
            notes.append("GPU fit: no GPU facts are recorded; the deploy checks the fit on the host before starting.")
        else:
            gpus = gpus_now(record)
            result.gpu_lines = [f"{gpu.format_gpu(g)} (estimated from the facts recorded then)" for g in gpus]
            _, blockers = gpu.check_fit(gpus, wanted, spec.runtime.gpu_memory_utilization, colour=plan.new_colour)
            verdict = "fits" if not blockers else "does not fit"
            notes.append(
                f"GPU fit: {plan.new_colour} {verdict} on GPU {', '.join(str(i) for i in wanted)} against the GPU "
                f"facts recorded at {escape_inline(record.recorded_at, 40)} (the deploy checks again on the host)."
            )
    result.plan = replace(plan, blockers=tuple(blockers))
    result.live_before = live
    result.active_colour = live.colour if live else None
    # An estimate does not fail the pull request: the blockers are shown, the deploy decides on the host.
    return OfflinePlan(result, notes)
