"""From what is on the host and the spec, the steps of a deploy. Pure: `bgdeploy plan` prints these, and
`bgdeploy deploy` carries out exactly these, in this order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from bgdeploy.plan.container import colour_gpus, gpu_list
from bgdeploy.plan.names import Colour, other
from bgdeploy.plan.state import Release
from bgdeploy.spec.durations import format_duration
from bgdeploy.spec.models import Spec
from bgdeploy.spec.release import changed_settings, settings_digest

StepKind = Literal[
    "remove-stale",
    "pull-image",
    "start",
    "wait-ready",
    "validate",
    "router",
    "switch",
    "smoke",
    "bake",
    "drain",
    "retire",
    "record",
]


@dataclass(frozen=True)
class Step:
    kind: StepKind
    summary: str
    skip: str | None = None  # why there is nothing to do, when there is nothing to do

    def render(self, number: int) -> str:
        if self.skip:
            return f"{number:>2}. {self.kind}: skipped: {self.skip}"
        return f"{number:>2}. {self.kind}: {self.summary}"


@dataclass(frozen=True)
class HostView:
    """The facts the planner needs, as observed (read-only) on the host."""

    live: Release | None
    live_running: bool
    stale: dict[Colour, str]  # colour → status of a container of that colour that is not live
    image_present: bool
    router_running: bool
    kept: bool = False  # the container of the new colour holds the previous release, kept for rollback
    settings: Mapping[str, str] | None = None  # the live deploy's other settings, as recorded (None: unknown)


@dataclass(frozen=True)
class Change:
    what: str
    before: str
    after: str


@dataclass(frozen=True)
class DeployPlan:
    new_colour: Colour
    unchanged: bool
    changes: tuple[Change, ...]
    steps: tuple[Step, ...]
    blockers: tuple[str, ...] = field(default=())


def port_in_use(ss_output: str, bind: str, port: int) -> str | None:
    """The listener (from `ss -Hltn`) that holds bind:port, or None when it is free."""
    wildcard = ("0.0.0.0", "*", "[::]", "::")
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, listened = fields[3].rpartition(":")
        if listened != str(port):
            continue
        address = address.strip("[]").split("%")[0]
        if address in wildcard or bind in wildcard or address == bind.strip("[]"):
            return fields[3]
    return None


def plan_deploy(spec: Spec, spec_hash: str, view: HostView, *, force: bool = False) -> DeployPlan:
    live = view.live if view.live_running else None
    new: Colour = other(live.colour) if live is not None else "blue"
    old = live.colour if live is not None else None
    gpus = colour_gpus(spec, new)
    unchanged = live is not None and live.spec_hash == spec_hash and not force

    changes: list[Change] = []
    if live is None:
        changes.append(Change("live colour", "none (first deploy)", new))
    else:
        if live.model != spec.model.name:
            changes.append(Change("model", live.model, spec.model.name))
        if live.image != spec.runtime.image:
            changes.append(Change("image", live.image, spec.runtime.image))
        new_gpus = gpu_list(colour_gpus(spec, new))
        if live.gpus and live.gpus != new_gpus:
            changes.append(Change("GPUs", f"{live.colour} on {live.gpus}", f"{new} on {new_gpus}"))
        memory = f"{spec.runtime.gpu_memory_utilization:g}"
        if live.memory and live.memory != memory:
            changes.append(Change("gpu_memory_utilization", live.memory, memory))
        if live.spec_hash != spec_hash and len(changes) == 0:
            changes.append(Change("settings", live.spec_hash, spec_hash))
        changes.append(Change("live colour", live.colour, new))

    if unchanged:
        changed = changed_settings(view.settings, settings_digest(spec)) if view.settings else []
        if changed:
            # The container would be the same: apply the settings (recorded by the deploy), never reload the model.
            names = ", ".join(changed)
            reason = f"settings only ({names}): the running model is kept, nothing to reload"
            settings = (Change("settings only", names, "applied without reloading the model"),)
            return DeployPlan(new, True, settings, tuple(Step(kind, "", reason) for kind in _ORDER))
        reason = "the spec is already live (use --force to deploy it again)"
        return DeployPlan(new, True, (), tuple(Step(kind, "", reason) for kind in _ORDER))

    prompts = spec.validation.prompts
    datasets = spec.validation.datasets
    compare = spec.validation.compare_with_live and live is not None
    keep = spec.rollout.keep_previous
    stale = view.stale.get(new)
    steps = [
        _stale_step(new, stale, view.kept),
        Step("pull-image", f"pull {spec.runtime.image}", "the image is on the host" if view.image_present else None),
        Step(
            "start",
            f"start {new} with {spec.model.name} on GPU {gpu_list(gpus)} "
            f"(gpu_memory_utilization {spec.runtime.gpu_memory_utilization:g}), after checking it fits",
        ),
        Step(
            "wait-ready",
            f"poll {spec.health.path} every {format_duration(spec.health.interval)} for up to "
            f"{format_duration(spec.health.ready_timeout)}",
        ),
        Step(
            "validate",
            f"ask {len(prompts)} prompt(s)"
            + "".join(f" + eval set {d.path}" + (f" (sample {d.sample})" if d.sample else "") for d in datasets)
            + f", {spec.validation.concurrency} at a time"
            + (f", and the same to {old} for comparison, at the same time" if compare else ""),
            None if prompts or datasets else "no validation prompts (health alone decides)",
        ),
        Step(
            "router",
            f"start the router on {spec.router.bind}:{spec.router.listen}",
            "the router is running" if view.router_running else None,
        ),
        Step("switch", _switch_summary(spec, new)),
        Step(
            "smoke",
            f"re-ask {', '.join(spec.rollout.smoke)} through the router",
            None if spec.rollout.smoke else "no smoke prompts (rollout.smoke)",
        ),
        Step(
            "bake",
            f"watch live traffic for {format_duration(spec.rollout.bake)} against rollout.rollback_on",
            None if spec.rollout.bake > 0 else "rollout.bake is 0",
        ),
        Step(
            "drain",
            f"let {old} finish in-flight requests (up to {format_duration(spec.rollout.drain_timeout)})",
            None if old else "nothing was live",
        ),
        Step(
            "retire",
            f"{'keep' if keep == 'running' else 'stop' if keep == 'stopped' else 'remove'} {old} "
            f"(keep_previous: {keep})",
            None if old else "nothing was live",
        ),
        Step("record", "write state.json and a history line on the host"),
    ]
    return DeployPlan(new, False, tuple(changes), tuple(steps))


def _stale_step(new: Colour, stale: str | None, kept: bool) -> Step:
    if stale is None:
        return Step("remove-stale", "", "no leftover container")
    if kept:
        return Step(
            "remove-stale",
            f"set the previous {new} release aside ({stale}): restored if this deploy fails, removed when it succeeds",
        )
    return Step("remove-stale", f"remove the leftover {new} container ({stale})")


def _switch_summary(spec: Spec, new: Colour) -> str:
    if spec.rollout.strategy == "canary":
        weights = " → ".join(f"{s.weight}% ({format_duration(s.bake)})" for s in spec.rollout.steps)
        return f"send traffic to {new} in canary steps {weights} → 100%"
    return f"send all traffic to {new} (nginx -t, atomic rename, reload, confirm through the router)"


_ORDER: tuple[StepKind, ...] = get_args(StepKind)  # the plan order is the order StepKind lists them
