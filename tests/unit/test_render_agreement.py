"""Validation and rendering agree: whatever `bgdeploy validate` accepts renders (the router's nginx config in
both modes, the container plan, the deploy plan, the report), and nginx itself accepts the config.

Specs are generated from the published JSON schema's own types (patterns, ranges, enums, nesting), so a key
added to the schema is covered without touching this file. A spec the generator makes is either refused by
validation (fine) or must render without an exception; a sample of the rendered configs goes through the
real `nginx -t`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgdeploy.errors import SpecError
from bgdeploy.plan.cohort import nginx_variable
from bgdeploy.plan.container import plan_container, spec_release
from bgdeploy.plan.names import Layout
from bgdeploy.plan.nginx import Backend, render_full_conf, render_http_block
from bgdeploy.plan.result import Result
from bgdeploy.plan.state import Release
from bgdeploy.plan.steps import HostView, plan_deploy
from bgdeploy.report.markdown import headline, render
from bgdeploy.routers.container import ContainerNginx
from bgdeploy.routers.host import HostNginx
from bgdeploy.spec import LoadedSpec, parse_spec_text
from bgdeploy.spec.schema import spec_schema
from tests.unit.conftest import HOST_KEY

SCHEMA = spec_schema()
# Under CI the same examples every run: a red build always means a real disagreement, never an unlucky draw.
DERANDOMIZE = os.environ.get("CI", "").lower() == "true"
# Keys whose valid values live outside the file (eval sets on disk) or that only multiply hosts (fleet): left
# out, so that more examples validate.
SKIP = {"datasets", "hosts", "fleet"}
MAX_ITEMS = 2  # short lists keep examples small; the renderers treat each item alike


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(
            {**SCHEMA["$defs"][ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}}
        )
    return node


def _string(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: len(s) <= 200)
    return st.text(min_size=node.get("minLength", 0), max_size=max(node.get("minLength", 0), 20))


def _number(node: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    if integer:
        low = None if low is None else int(low) + (1 if "exclusiveMinimum" in node else 0)
        high = None if high is None else int(high) - (1 if "exclusiveMaximum" in node else 0)
        return st.integers(min_value=low, max_value=high)
    return st.floats(
        min_value=low,
        max_value=high,
        exclude_min="exclusiveMinimum" in node,
        exclude_max="exclusiveMaximum" in node,
        allow_nan=False,
        allow_infinity=False,
    )


def from_schema(node: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of the schema node's own types: each alternative, pattern, range and nested object."""
    node = _resolve(node)
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    for key in ("anyOf", "oneOf"):
        if key in node:
            return st.one_of([from_schema(alt, depth) for alt in node[key]])
    kinds = node.get("type")
    if isinstance(kinds, list):
        return st.one_of([from_schema({**node, "type": kind}, depth) for kind in kinds])
    if kinds == "string":
        return _string(node)
    if kinds in ("integer", "number"):
        return _number(node, kinds == "integer")
    if kinds == "boolean":
        return st.booleans()
    if kinds == "null":
        return st.none()
    if kinds == "array":
        items = from_schema(node.get("items", {}), depth + 1) if depth < 6 else st.nothing()
        low = node.get("minItems", 0)
        return st.lists(items, min_size=low, max_size=max(low, min(node.get("maxItems", MAX_ITEMS), MAX_ITEMS)))
    if kinds == "object" or "properties" in node:
        return _object(node, depth)
    # An unconstrained value (e.g. a JSON Schema inside a prompt): a plain object is enough here.
    return st.just({})


def _object(node: dict[str, Any], depth: int) -> st.SearchStrategy[dict[str, Any]]:
    props = {k: v for k, v in node.get("properties", {}).items() if k not in SKIP}
    required = [k for k in node.get("required", []) if k in props]
    optional = [k for k in props if k not in required]
    if not props:
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and depth < 6:
            keys = _string(_resolve(node.get("propertyNames", {"type": "string"})) | {"type": "string"})
            return st.dictionaries(keys, from_schema(extra, depth + 1), max_size=MAX_ITEMS)
        return st.just({})
    if depth >= 6:
        return st.fixed_dictionaries({k: from_schema(props[k], depth + 1) for k in required})
    return st.fixed_dictionaries(
        {k: from_schema(props[k], depth + 1) for k in required},
        optional={k: from_schema(props[k], depth + 1) for k in optional},
    )


@st.composite
def spec_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = draw(from_schema(SCHEMA))
    # Sticky cohorts and capture change the router's config most; as optional keys two levels down they are
    # rarely drawn by the schema walk alone, so half the examples get each.
    # A cohort comes with the canary it needs; capture sizes mostly from the range the checks allow.
    cohort = draw(st.one_of(st.none(), from_schema({"$ref": "#/$defs/Cohort"})))
    capture = draw(st.one_of(st.none(), from_schema({"$ref": "#/$defs/Capture"})))
    rollout = doc.setdefault("rollout", {})
    if cohort is not None and isinstance(rollout, dict):
        rollout["cohort"] = cohort
        rollout["strategy"] = "canary"
        if not rollout.get("steps"):
            rollout["steps"] = [{"weight": draw(st.integers(1, 100)), "bake": "1m"}]
    validation = doc.setdefault("validation", {})
    if capture is not None and isinstance(validation, dict) and isinstance(validation.get("replay", {}), dict):
        if draw(st.booleans()):
            capture["max_bytes"] = draw(st.sampled_from(["64k", "1m", "64m", "2g", "65536"]))
            capture["max_body"] = draw(st.sampled_from(["1k", "4k", "16k", "1024"]))
        validation.setdefault("replay", {})["capture"] = capture
    # A pinned key cannot be generated from a pattern; give a real one where the target needs it.
    target = doc.setdefault("target", {})
    if isinstance(target, dict) and target.get("transport", "ssh") == "ssh":
        target.pop("known_hosts", None)
        target["host_key"] = HOST_KEY
        target.setdefault("host", "gpu-1.example.com")
    return doc


def load(doc: dict[str, Any]) -> LoadedSpec | None:
    try:
        return parse_spec_text(yaml.safe_dump(doc, allow_unicode=True), "bluegreen.yaml", environ={})
    except SpecError:
        return None


def router_configs(loaded: LoadedSpec, log_dir: str, *, every_split: bool = True) -> list[tuple[str, str]]:
    """The router config of every situation a deploy renders: first deploy, canary split, full switch, back
    (`every_split=False`: one colour alone and one split, what nginx -t needs to see)."""
    spec = loaded.spec
    out: list[tuple[str, str]] = []
    splits = [{"blue": 100}, {"blue": 100, "green": 0}, {"green": 100, "blue": 0}]
    splits += [{"blue": 100 - s.weight, "green": s.weight} for s in spec.rollout.steps]
    if not every_split:
        steps = spec.rollout.steps
        splits = [
            {"blue": 100},
            {"blue": 100 - steps[0].weight, "green": steps[0].weight} if steps else {"blue": 50, "green": 50},
        ]
    # The routers' own configs (cohort, capture and all), with the files moved where nginx -t can open them.
    session = SimpleNamespace(loaded=loaded, layout=Layout(spec.name, "/home/deploy"))
    routers = {"host": HostNginx(session), "container": ContainerNginx(session)}  # type: ignore[arg-type]
    for weights in splits:
        backends = tuple(Backend(c, f"127.0.0.1:{18000 + i}", w) for i, (c, w) in enumerate(weights.items()))
        for kind, router in routers.items():
            cfg = router._router_config(backends)
            capture_log = None if cfg.capture_log is None else f"{log_dir}/capture.jsonl"
            cfg = replace(cfg, access_log=f"{log_dir}/access.log", capture_log=capture_log)
            if kind == "host":
                out.append((kind, render_http_block(cfg)))
            else:
                out.append((kind, render_full_conf(cfg, runtime_dir=log_dir)))
            _check_settings_rendered(loaded, cfg, out[-1][1])
    return out


def _check_settings_rendered(loaded: LoadedSpec, cfg: Any, text: str) -> None:
    """The renderer was given the spec's cohort and capture, and the config shows them."""
    spec = loaded.spec
    cohort = spec.rollout.cohort
    replay = spec.validation.replay
    capture = replay.capture if replay is not None else None
    assert cfg.cohort_by == (cohort.by if cohort is not None else None)
    assert (cfg.capture_log is not None) == (capture is not None)
    if capture is not None:
        assert f"access_log {cfg.capture_log} " in text, text
    if cohort is not None and sum(1 for b in cfg.backends if b.weight > 0) > 1:
        assert f"${nginx_variable(cohort.by)}" in text, text


def render_everything(loaded: LoadedSpec) -> list[tuple[str, str]]:
    spec = loaded.spec
    layout = Layout(spec.name, "/home/deploy")
    for colour in ("blue", "green"):
        plan_container(spec, layout, colour, loaded.spec_hash, "2026-01-01T00:00:00Z")
    live = Release("blue", "old/model", "old:image", "0" * 16, "2026-01-01T00:00:00Z", gpus="0", memory="0.4")
    views = [
        HostView(live=None, live_running=False, stale={}, image_present=False, router_running=False),
        HostView(live=live, live_running=True, stale={"green": "exited"}, image_present=True, router_running=True),
    ]
    result = Result(command="deploy", name=spec.name, outcome="failed", failure="a failure", live_before=live)
    for view in views:
        plan = plan_deploy(spec, loaded.spec_hash, view)
        for number, step in enumerate(plan.steps, start=1):
            step.render(number)
        result.plan = plan
    result.target = spec_release(spec, "green", loaded.spec_hash, "2026-01-01T00:00:00Z")
    render(result)
    headline(result, markdown=False)
    return router_configs(loaded, "/var/log/bgdeploy-test")


@settings(
    max_examples=60,
    deadline=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec_documents())
def test_every_spec_that_validates_renders(doc: dict[str, Any]) -> None:
    loaded = load(doc)
    if loaded is not None:
        render_everything(loaded)


# -- the known cases of issue #9, and nginx's own verdict ---------------------------------------------------

MINIMAL: dict[str, Any] = {
    "version": 1,
    "name": "chat",
    "target": {"host": "gpu-1.example.com", "host_key": HOST_KEY},
    "model": {"name": "m"},
    "runtime": {"image": "vllm/vllm-openai:v0.9.2"},
}


@st.composite
def cohort_capture_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid base with what the router renders differently: sticky cohorts and request capture (values from
    the schema), each mode, canary steps; the broad generator above seldom draws a valid one of these."""
    weights = sorted(set(draw(st.lists(st.integers(1, 100), min_size=1, max_size=3))))
    cohort = draw(st.one_of(st.none(), from_schema({"$ref": "#/$defs/Cohort"})))
    capture = draw(st.one_of(st.none(), from_schema({"$ref": "#/$defs/Capture"})))
    if capture is not None and draw(st.integers(0, 3)):
        capture["max_bytes"] = draw(st.sampled_from(["64k", "1m", "64m", "2g", "65536"]))
        capture["max_body"] = draw(st.sampled_from(["1k", "4k", "16k", "1024"]))
    rollout: dict[str, Any] = {"strategy": "canary", "steps": [{"weight": w, "bake": "1m"} for w in weights]}
    if cohort is not None:
        rollout["cohort"] = cohort
    doc: dict[str, Any] = {
        **MINIMAL,
        "router": {"mode": draw(st.sampled_from(["container", "host"]))},
        "health": {"path": draw(st.sampled_from(["/health", "/v1/models", "/ready?full=1"]))},
        "rollout": rollout,
    }
    if capture is not None:
        doc["validation"] = {"replay": {"capture": capture}}
    return doc


@settings(max_examples=30, deadline=None, derandomize=DERANDOMIZE, suppress_health_check=[HealthCheck.too_slow])
@given(cohort_capture_documents())
def test_cohort_and_capture_reach_the_rendered_config(doc: dict[str, Any]) -> None:
    loaded = load(doc)
    if loaded is not None:
        render_everything(loaded)  # asserts the routers passed cohort and capture on (_check_settings_rendered)


def test_a_health_path_with_a_query_validates_and_routes_on_its_path() -> None:
    loaded = load({**MINIMAL, "health": {"path": "/health?ready=1"}})
    assert loaded is not None
    text = dict(router_configs(loaded, "/tmp"))["host"]
    assert "location = /health {" in text and "?ready=1" not in text.split("location = /health {")[1].split("}")[0]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"router": {"read_timeout": 0}}, "router.read_timeout must be more than 0"),
        ({"router": {"read_timeout": "48h"}}, "more than a day"),
        ({"health": {"path": "/he;alth"}}, "cannot be routed"),
        ({"health": {"path": "/health?x=$host"}}, "cannot be routed"),
        ({"health": {"path": "/{x}"}}, "cannot be routed"),
    ],
)
def test_what_the_router_cannot_carry_is_refused_with_line_and_fix(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec_text(yaml.safe_dump({**MINIMAL, **extra}), "bluegreen.yaml", environ={})
    rendered = info.value.render()
    assert problem in rendered and rendered.startswith("bluegreen.yaml:"), rendered


def _nginx() -> str | None:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None and os.environ.get("CI", "").lower() == "true":
        pytest.fail("nginx is not installed (CI=true: scripts/testbed up installs it)", pytrace=False)
    return found


def nginx_test(nginx: str, kind: str, text: str, work: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` of a rendered config: the container's whole nginx.conf, or the include inside an http block."""
    conf = work / "nginx.conf"
    if kind == "container":
        conf.write_text(text)
    else:
        (work / "block.conf").write_text(text)
        conf.write_text(
            f"pid {work}/nginx.pid;\nerror_log /dev/stderr notice;\nevents {{}}\n"
            f"http {{\n  client_body_temp_path {work}/cb;\n  proxy_temp_path {work}/px;\n"
            f"  fastcgi_temp_path {work}/fc;\n  uwsgi_temp_path {work}/uw;\n  scgi_temp_path {work}/sc;\n"
            f"  include {work}/block.conf;\n}}\n"
        )
    return subprocess.run([nginx, "-t", "-q", "-c", str(conf)], capture_output=True, text=True, timeout=30, check=False)


@settings(
    max_examples=15,
    derandomize=DERANDOMIZE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(doc=st.one_of(spec_documents(), cohort_capture_documents()))
def test_nginx_accepts_a_sample_of_rendered_configs(
    doc: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    nginx = _nginx()
    if nginx is None:
        pytest.skip("nginx is not installed here")
    loaded = load(doc)
    if loaded is None:
        return
    work = tmp_path_factory.mktemp("nginx")
    for kind, text in router_configs(loaded, str(work), every_split=False):
        done = nginx_test(nginx, kind, text, work)
        assert done.returncode == 0, f"nginx -t refused the {kind} config:\n{done.stderr}\n{text}"
