"""Settings that do not change the container never reload the model: the release hash covers only what the
container runs, and the plan says "settings only", naming them."""

from __future__ import annotations

from typing import Any

import yaml

from bgdeploy.plan.state import HostState, Release
from bgdeploy.plan.steps import HostView, plan_deploy
from bgdeploy.spec import LoadedSpec, parse_spec_text
from bgdeploy.spec.release import changed_settings
from tests.unit.conftest import MINIMAL


def loaded(**extra: Any) -> LoadedSpec:
    data = yaml.safe_load(MINIMAL)
    for dotted, value in extra.items():
        section, key = dotted.split("__")
        data.setdefault(section, {})[key] = value
    return parse_spec_text(yaml.safe_dump(data), "bluegreen.yaml", environ={})


def test_the_release_hash_covers_only_what_the_container_runs() -> None:
    base = loaded()
    for settings_only in (
        loaded(rollout__bake="5m"),
        loaded(target__connect_timeout="30s"),
        loaded(validation__concurrency=8),
        loaded(router__read_timeout="10m"),
        loaded(health__interval="5s"),
    ):
        assert settings_only.spec_hash == base.spec_hash
        assert settings_only.settings != base.settings
    for container in (
        loaded(runtime__args=["--enforce-eager"]),
        loaded(runtime__env={"A": "1"}),
        loaded(model__revision="main"),
        loaded(gpus__green=[1]),
        loaded(router__mode="host"),
    ):
        assert container.spec_hash != base.spec_hash


def view(spec: LoadedSpec, settings: dict[str, str] | None) -> HostView:
    live = Release("blue", spec.spec.model.name, spec.spec.runtime.image, spec.spec_hash, "t", gpus="0", memory="0.45")
    return HostView(live=live, live_running=True, stale={}, image_present=True, router_running=True, settings=settings)


def test_the_plan_says_settings_only_and_names_them() -> None:
    before = loaded()
    after = loaded(rollout__bake="5m", target__connect_timeout="30s")
    plan = plan_deploy(after.spec, after.spec_hash, view(after, before.settings))
    assert plan.unchanged
    assert [(c.what, c.before) for c in plan.changes] == [("settings only", "rollout.bake, target.connect_timeout")]
    assert all(s.skip and s.skip.startswith("settings only (rollout.bake, target.connect_timeout)") for s in plan.steps)
    same = plan_deploy(after.spec, after.spec_hash, view(after, after.settings))
    assert same.unchanged and same.changes == ()


def test_settings_are_recorded_in_state_json() -> None:
    spec = loaded()
    state = HostState(name="chat").with_settings(spec.settings)
    back, _ = HostState.from_json("chat", state.to_json())
    assert back.settings == spec.settings
    assert changed_settings({"a.b": "1", "c.d": "2"}, {"a.b": "1", "e.f": "3"}) == ["c.d", "e.f"]
