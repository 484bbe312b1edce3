"""The deploy planner: which steps run, which are skipped and why, and what changes."""

from __future__ import annotations

from bgdeploy.plan.names import Colour
from bgdeploy.plan.state import Release
from bgdeploy.plan.steps import DeployPlan, HostView, Step, plan_deploy
from bgdeploy.spec import LoadedSpec
from tests.unit.conftest import MINIMAL, load

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
IMAGE = "vllm/vllm-openai:v0.9.2"

PROMPTS = """\
validation:
  prompts:
    - name: capital
      chat: "What is the capital of France?"
      expect: {contains: [Paris]}
    - name: sum
      chat: "What is 2 + 2?"
"""

CANARY = """\
gpus:
  blue: [0]
  green: [1]
rollout:
  strategy: canary
  steps:
    - {weight: 10, bake: 2m}
    - {weight: 50, bake: 5m}
"""


def spec(extra: str = "") -> LoadedSpec:
    return load(MINIMAL + extra)


def release(colour: Colour = "blue", model: str = MODEL, image: str = IMAGE, spec_hash: str = "old-hash") -> Release:
    return Release(colour=colour, model=model, image=image, spec_hash=spec_hash, deployed_at="2025-01-01T00:00:00Z")


def view(
    live: Release | None = None,
    *,
    live_running: bool = True,
    stale: dict[Colour, str] | None = None,
    image_present: bool = False,
    router_running: bool = False,
) -> HostView:
    return HostView(
        live=live,
        live_running=live_running,
        stale=stale or {},
        image_present=image_present,
        router_running=router_running,
    )


def plan(loaded: LoadedSpec, host: HostView, *, force: bool = False) -> DeployPlan:
    return plan_deploy(loaded.spec, loaded.spec_hash, host, force=force)


def step(p: DeployPlan, kind: str) -> Step:
    matches = [s for s in p.steps if s.kind == kind]
    assert len(matches) == 1, kind
    return matches[0]


def changes(p: DeployPlan) -> list[tuple[str, str, str]]:
    return [(c.what, c.before, c.after) for c in p.changes]


ORDER = [
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


# --- first and second deploys ------------------------------------------------------------------------------


def test_first_deploy_goes_to_blue() -> None:
    p = plan(spec(), view())
    assert p.new_colour == "blue"
    assert not p.unchanged
    assert p.blockers == ()
    assert [s.kind for s in p.steps] == ORDER
    assert changes(p) == [("live colour", "none (first deploy)", "blue")]
    for kind in ("drain", "retire"):
        assert step(p, kind).skip == "nothing was live"
    assert step(p, "start").skip is None
    assert step(p, "switch").skip is None
    assert step(p, "record").skip is None


def test_first_deploy_start_summary_names_model_gpu_and_memory() -> None:
    summary = step(plan(spec(), view()), "start").summary
    assert "start blue" in summary
    assert MODEL in summary
    assert "GPU 0" in summary
    assert "gpu_memory_utilization 0.45" in summary


def test_first_deploy_has_no_comparison_with_live() -> None:
    p = plan(spec(PROMPTS), view())
    assert "for comparison" not in step(p, "validate").summary


def test_live_recorded_but_not_running_is_a_first_deploy() -> None:
    p = plan(spec(), view(release("green"), live_running=False))
    assert p.new_colour == "blue"
    assert changes(p) == [("live colour", "none (first deploy)", "blue")]
    assert step(p, "drain").skip == "nothing was live"


def test_second_deploy_goes_to_the_other_colour_and_lists_model_and_image() -> None:
    p = plan(spec(), view(release("blue", model="Qwen/Qwen2.5-7B-Instruct", image="vllm/vllm-openai:v0.8.0")))
    assert p.new_colour == "green"
    assert not p.unchanged
    assert changes(p) == [
        ("model", "Qwen/Qwen2.5-7B-Instruct", MODEL),
        ("image", "vllm/vllm-openai:v0.8.0", IMAGE),
        ("live colour", "blue", "green"),
    ]
    assert step(p, "drain").skip is None
    assert "let blue finish" in step(p, "drain").summary
    assert step(p, "retire").skip is None
    assert step(p, "retire").summary == "stop blue (keep_previous: stopped)"
    assert "start green" in step(p, "start").summary


def test_green_live_goes_back_to_blue() -> None:
    assert plan(spec(), view(release("green"))).new_colour == "blue"


def test_only_settings_changed_is_one_settings_row() -> None:
    loaded = spec()
    p = plan(loaded, view(release("blue", spec_hash="abc")))
    assert changes(p) == [("settings", "abc", loaded.spec_hash), ("live colour", "blue", "green")]


def test_second_deploy_compares_validation_with_live() -> None:
    p = plan(spec(PROMPTS), view(release("blue")))
    summary = step(p, "validate").summary
    assert summary.startswith("ask 2 prompt(s), 4 at a time")
    assert "and the same to blue for comparison" in summary


def test_retire_follows_keep_previous() -> None:
    p = plan(spec("rollout:\n  keep_previous: running\n"), view(release("blue")))
    assert step(p, "retire").summary == "keep blue (keep_previous: running)"
    p = plan(spec("rollout:\n  keep_previous: removed\n"), view(release("blue")))
    assert step(p, "retire").summary == "remove blue (keep_previous: removed)"


def test_green_gets_green_gpus() -> None:
    p = plan(spec(CANARY), view(release("blue")))
    assert "GPU 1" in step(p, "start").summary


# --- unchanged and --force --------------------------------------------------------------------------------


def test_same_spec_hash_is_unchanged_and_every_step_skipped() -> None:
    loaded = spec()
    p = plan(loaded, view(release("blue", spec_hash=loaded.spec_hash)))
    assert p.unchanged
    assert p.changes == ()
    assert [s.kind for s in p.steps] == ORDER
    for s in p.steps:
        assert s.skip is not None
        assert "--force" in s.skip
        assert "already live" in s.skip


def test_force_deploys_the_same_spec_again() -> None:
    loaded = spec()
    p = plan(loaded, view(release("blue", spec_hash=loaded.spec_hash)), force=True)
    assert not p.unchanged
    assert p.new_colour == "green"
    assert changes(p) == [("live colour", "blue", "green")]
    assert step(p, "start").skip is None
    assert step(p, "switch").skip is None


# --- individual skips -------------------------------------------------------------------------------------


def test_leftover_container_of_the_new_colour_is_removed() -> None:
    p = plan(spec(), view(release("blue"), stale={"green": "exited"}))
    s = step(p, "remove-stale")
    assert s.skip is None
    assert s.summary == "remove the leftover green container (exited)"


def test_leftover_container_of_the_other_colour_is_not_the_new_ones() -> None:
    p = plan(spec(), view(release("blue"), stale={"blue": "exited"}))
    assert step(p, "remove-stale").skip == "no leftover container"


def test_image_present_skips_the_pull() -> None:
    assert step(plan(spec(), view(image_present=True)), "pull-image").skip == "the image is on the host"
    pull = step(plan(spec(), view(image_present=False)), "pull-image")
    assert pull.skip is None
    assert pull.summary == f"pull {IMAGE}"


def test_no_prompts_skips_validation() -> None:
    assert step(plan(spec(), view()), "validate").skip == "no validation prompts (health alone decides)"
    assert step(plan(spec(PROMPTS), view()), "validate").skip is None


def test_no_smoke_prompts_skips_smoke() -> None:
    assert step(plan(spec(), view()), "smoke").skip == "no smoke prompts (rollout.smoke)"
    p = plan(spec(PROMPTS + "rollout:\n  smoke: [capital, sum]\n"), view())
    smoke = step(p, "smoke")
    assert smoke.skip is None
    assert smoke.summary == "re-ask capital, sum through the router"


def test_running_router_is_not_started_again() -> None:
    assert step(plan(spec(), view(router_running=True)), "router").skip == "the router is running"
    router = step(plan(spec(), view(router_running=False)), "router")
    assert router.skip is None
    assert router.summary == "start the router on 0.0.0.0:80"


def test_bake_zero_is_skipped() -> None:
    assert step(plan(spec("rollout:\n  bake: 0s\n"), view()), "bake").skip == "rollout.bake is 0"
    bake = step(plan(spec(), view()), "bake")
    assert bake.skip is None
    assert bake.summary == "watch live traffic for 1m against rollout.rollback_on"


def test_canary_switch_lists_the_weights() -> None:
    summary = step(plan(spec(CANARY), view()), "switch").summary
    assert summary == "send traffic to blue in canary steps 10% (2m) → 50% (5m) → 100%"


def test_all_at_once_switch() -> None:
    summary = step(plan(spec(), view()), "switch").summary
    assert summary.startswith("send all traffic to blue")


def test_wait_ready_summary_uses_health_settings() -> None:
    summary = step(plan(spec(), view()), "wait-ready").summary
    assert summary == "poll /health every 2s for up to 15m"


# --- rendering --------------------------------------------------------------------------------------------


def test_render_step() -> None:
    assert Step("start", "start blue").render(3) == " 3. start: start blue"
    assert Step("bake", "watch", "rollout.bake is 0").render(12) == "12. bake: skipped: rollout.bake is 0"


def test_render_every_planned_step() -> None:
    p = plan(spec(), view())
    lines = [s.render(i) for i, s in enumerate(p.steps, start=1)]
    assert lines[0] == " 1. remove-stale: skipped: no leftover container"
    assert lines[-1] == "12. record: write state.json and a history line on the host"


def test_a_router_the_host_runs_is_never_started() -> None:
    # Host mode: HostNginx.running() is always true (the host's nginx is the admin's), so the plan skips it.
    assert step(plan(spec("router:\n  mode: host\n"), view(router_running=True)), "router").skip is not None


SS_OUTPUT = """\
LISTEN 0      128      0.0.0.0:2024  0.0.0.0:*
LISTEN 0      4096   127.0.0.1:18080 0.0.0.0:*
LISTEN 0      511       [::]:8443       [::]:*
LISTEN 0      511    [fe80::1%eth0]:9000       [::]:*
"""


def test_port_in_use_reads_ss_output() -> None:
    from bgdeploy.plan.steps import port_in_use

    assert port_in_use(SS_OUTPUT, "127.0.0.1", 18080) == "127.0.0.1:18080"
    assert port_in_use(SS_OUTPUT, "0.0.0.0", 18080) == "127.0.0.1:18080", "a wildcard bind conflicts with any"
    assert port_in_use(SS_OUTPUT, "127.0.0.1", 2024) == "0.0.0.0:2024", "a wildcard listener conflicts too"
    assert port_in_use(SS_OUTPUT, "127.0.0.1", 8443) == "[::]:8443"
    assert port_in_use(SS_OUTPUT, "10.0.0.5", 18080) is None, "another address on the same port is free"
    assert port_in_use(SS_OUTPUT, "127.0.0.1", 80) is None
    assert port_in_use("", "0.0.0.0", 80) is None


def test_gpu_and_memory_changes_are_shown_against_the_live_release() -> None:
    loaded = load(MINIMAL + "  gpu_memory_utilization: 0.9\ngpus: {blue: [0], green: [1]}\n")
    live = Release(
        "blue", "meta-llama/Llama-3.1-8B-Instruct", "vllm/vllm-openai:v0.9.2", "old", "t", gpus="0", memory="0.45"
    )
    view = HostView(live=live, live_running=True, stale={}, image_present=True, router_running=True)
    changes = {c.what: (c.before, c.after) for c in plan_deploy(loaded.spec, loaded.spec_hash, view).changes}
    assert changes["GPUs"] == ("blue on 0", "green on 1")
    assert changes["gpu_memory_utilization"] == ("0.45", "0.9")
