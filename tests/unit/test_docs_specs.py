"""Every spec a user can copy is one that validates as written: the README's and each example."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgdeploy.spec import load_spec
from bgdeploy.spec.lint import lint

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SPEC_KEYS = {"version", "name", "target", "model", "runtime", "gpus", "router", "health", "validation", "rollout"}


def readme_blocks() -> list[dict[str, Any]]:
    blocks = []
    for match in re.finditer(r"```yaml\n(.*?)```", README.read_text(), re.DOTALL):
        data = yaml.safe_load(match.group(1))
        if isinstance(data, dict) and set(data) <= SPEC_KEYS | {"report"}:
            blocks.append(data)
    return blocks


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates_without_a_warning(path: Path) -> None:
    loaded = load_spec(str(path))
    assert [w.render(path.name) for w in lint(loaded.spec, loaded.located)] == []


def test_the_readme_minimal_spec_and_its_additions_validate(tmp_path: Path) -> None:
    blocks = readme_blocks()
    full = [b for b in blocks if "version" in b]
    assert full, "the README shows a complete spec"
    minimal = full[0]
    for number, block in enumerate(full):
        path = tmp_path / f"full-{number}.yaml"
        path.write_text(yaml.safe_dump(block, sort_keys=False))
        load_spec(str(path))
    # The fragments the README adds to it (validation, rollout, canary steps), each on the minimal spec.
    fragments = [b for b in blocks if "version" not in b and "target" not in b]
    assert fragments
    for number, fragment in enumerate(fragments):
        spec = merge(minimal, fragment)
        if fragment.get("rollout", {}).get("strategy") == "canary":
            spec["gpus"] = {"blue": [0], "green": [1]}  # the README says: with two GPUs
        if "smoke" in spec.get("rollout", {}) and "validation" not in spec:
            spec = merge(spec, next(b for b in fragments if "validation" in b))
        path = tmp_path / f"fragment-{number}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        load_spec(str(path))
    # The minimal spec with the README's prompts is one bgdeploy has nothing to warn about.
    path = tmp_path / "minimal-with-prompts.yaml"
    path.write_text(yaml.safe_dump(merge(minimal, next(b for b in fragments if "validation" in b)), sort_keys=False))
    loaded = load_spec(str(path))
    assert [w.render(path.name) for w in lint(loaded.spec, loaded.located)] == []
