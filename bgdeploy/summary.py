"""One-line human summaries of a spec (for `validate` and logs). Pure."""

from __future__ import annotations

from bgdeploy.spec.models import Spec


def _gpus(indices: list[int]) -> str:
    return "no GPU" if not indices else "GPU " + ",".join(str(i) for i in indices)


def one_line(spec: Spec) -> str:
    t = spec.target
    where = "this machine (local)" if t.transport == "local" else f"{t.user}@{t.host}:{t.port} over ssh"
    if t.hosts is not None:
        where = f"{len(t.hosts)} hosts ({', '.join(h.label or h.host for h in t.hosts)}) as {t.user} over ssh"
    prompts = len(spec.validation.prompts)
    rollout: str = spec.rollout.strategy
    if rollout == "canary":
        rollout += " " + " → ".join(f"{s.weight}%" for s in spec.rollout.steps) + " → 100%"
    memory = f" at {spec.runtime.gpu_memory_utilization:g} of GPU memory" if spec.gpus.blue or spec.gpus.green else ""
    return (
        f"{spec.name} serves {spec.model.name} as {spec.model.effective_served_name!r} "
        f"({spec.runtime.image}) on {where}; blue {_gpus(spec.gpus.blue)}, green {_gpus(spec.gpus.green)}"
        f"{memory}; {prompts} validation prompt{'s' if prompts != 1 else ''}"
        + "".join(f" + eval set {d.path}" for d in spec.validation.datasets)
        + f"; rollout {rollout}"
    )
