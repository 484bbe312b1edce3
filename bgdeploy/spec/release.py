"""Which settings make a release, and which do not.

A release is what a colour's container runs: the keys in CONTAINER_KEYS. Changing one of them needs a new
colour loaded beside the live one; the release hash (the `spec-hash` label and state.json's `spec_hash`)
covers only them. Every other key (the bake, timeouts, validation thresholds, the router's read timeout...)
is a setting that a deploy applies without reloading the model: the plan says "settings only".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from bgdeploy.spec.models import Spec

# Dotted keys (a section, or one key of a section) that change the colour's container: its name, model and
# server, its GPUs, and the Docker network it joins (router.mode).
CONTAINER_KEYS = ("name", "model", "runtime", "gpus", "router.mode")


def _short(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _effective(spec: Spec) -> dict[str, Any]:
    data: dict[str, Any] = spec.model_dump(mode="json", by_alias=True)
    return data


def release_hash(spec: Spec) -> str:
    """A stable hash of what the container runs (defaults filled in): equal hashes need no new colour."""
    data = _effective(spec)
    picked: dict[str, Any] = {}
    for key in CONTAINER_KEYS:
        section, _, name = key.partition(".")
        value = data.get(section)
        picked[key] = value.get(name) if name and isinstance(value, dict) else value
    return _short(picked)


def settings_digest(spec: Spec) -> dict[str, str]:
    """Every other setting by dotted key (a section's keys, one level down), as a short hash: recorded on the
    host, so that a plan can name the settings that changed since the last deploy."""
    out: dict[str, str] = {}
    for section, value in _effective(spec).items():
        if section in CONTAINER_KEYS:
            continue
        if isinstance(value, dict):
            for key, sub in value.items():
                dotted = f"{section}.{key}"
                if dotted not in CONTAINER_KEYS:
                    out[dotted] = _short(sub)
        else:
            out[section] = _short(value)
    return out


def changed_settings(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The dotted keys whose value differs (added or removed keys included), sorted."""
    return sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
