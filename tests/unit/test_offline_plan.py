"""The offline plan of a pull request (from GitHub's record, no host) and the record a deployment keeps."""

from __future__ import annotations

from bgdeploy.github.deployments import GpuFact, Record
from bgdeploy.github.offline import NOT_CONTACTED, gpus_now, offline_plan
from bgdeploy.plan.state import Release
from bgdeploy.report.markdown import render
from tests.unit.conftest import MINIMAL, load

GPUS = """\
gpus:
  blue: [0]
  green: [0]
"""


def spec(model: str = "meta-llama/Llama-3.1-8B-Instruct", memory: float = 0.45) -> tuple[object, str]:
    loaded = load(
        MINIMAL.replace("meta-llama/Llama-3.1-8B-Instruct", model) + f"  gpu_memory_utilization: {memory}\n" + GPUS
    )
    return loaded.spec, loaded.spec_hash


def record(memory: str = "0.45", free: int = 70000, bgdeploy: int = 0) -> Record:
    live = Release(
        "blue", "meta-llama/Llama-3.1-8B-Instruct", "vllm/vllm-openai:v0.9.2", "h1", "2026-01-02T03:04:05Z", "0", memory
    )
    used = 143156 - free
    fact = GpuFact(0, "NVIDIA H200", 143771, used, free, bgdeploy)
    return Record("chat", live, "2026-01-02T03:04:05Z", (fact,))


def test_the_record_round_trips_through_a_deployment_payload() -> None:
    rec = record()
    payload = rec.payload()
    assert payload["model"] == rec.release.model and payload["colour"] == "blue"
    assert Record.from_payload(payload, "chat") == rec
    assert Record.from_payload(payload, "other-name") is None
    assert Record.from_payload({"model": "x"}, "chat") is None
    assert Record.from_payload({**payload, "release": {"colour": "purple"}}, "chat") is None


def test_a_new_model_plans_against_the_recorded_release_and_says_the_host_was_not_contacted() -> None:
    s, h = spec("acme/chat-v2")
    planned = offline_plan(s, h, record(bgdeploy=64421), "GitHub deployment 7 of production")  # type: ignore[arg-type]
    result = planned.result
    assert result.outcome == "planned"
    assert result.plan is not None and result.plan.new_colour == "green"
    assert next((c.what, c.before, c.after) for c in result.plan.changes) == (
        "model",
        "meta-llama/Llama-3.1-8B-Instruct",
        "acme/chat-v2",
    )
    assert NOT_CONTACTED in planned.notes[0]
    assert any("2026-01-02T03:04:05Z" in n and "deployment 7" in n for n in planned.notes)
    assert any("GPU fit: green fits on GPU 0" in n for n in planned.notes)
    assert "Steps:" in render(result)


def test_the_fit_uses_the_recorded_facts_after_the_recorded_deploy() -> None:
    # At the recorded preflight the old colour held 64421 MiB (0.45) and 60000 were free: after that deploy the
    # old colour's memory is free again and the recorded release holds 0.45, so another 0.45 fits.
    rec = record(free=60000, bgdeploy=64421)
    (gpu,) = gpus_now(rec)
    assert gpu.used_mib == 143156 - 60000 and gpu.free_mib == 60000 + 64421 - 64421
    # Nothing of the used memory was bgdeploy's: other processes hold 83156 MiB, the release 64421 more.
    rec = record(free=60000, bgdeploy=0)
    (gpu,) = gpus_now(rec)
    assert gpu.free_mib == 0
    s, h = spec("acme/chat-v2")
    planned = offline_plan(s, h, rec, "GitHub deployment 7 of production")  # type: ignore[arg-type]
    assert planned.result.plan is not None and planned.result.plan.blockers
    assert any("does not fit" in n for n in planned.notes)
    assert planned.result.outcome == "planned", "an estimate shows blockers, it does not fail the pull request"


def test_no_earlier_deployment_says_so() -> None:
    s, h = spec()
    planned = offline_plan(s, h, None, "GitHub deployments of production")  # type: ignore[arg-type]
    assert any("No earlier successful deployment" in n for n in planned.notes)
    assert planned.result.plan is not None
    assert planned.result.plan.changes[0].before == "none (first deploy)"
    assert any("no GPU facts are recorded" in n for n in planned.notes)


def test_the_same_spec_is_unchanged() -> None:
    s, h = spec()
    rec = record()
    rec = Record("chat", Release("blue", rec.release.model, rec.release.image, h, "t", "0", "0.45"), "t", rec.gpus)
    planned = offline_plan(s, h, rec, "x")  # type: ignore[arg-type]
    assert planned.result.plan is not None and planned.result.plan.unchanged
