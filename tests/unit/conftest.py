"""Helpers for spec tests: a minimal valid spec and a way to get the problems of a text."""

from __future__ import annotations

import pytest

from bgdeploy.errors import SpecError
from bgdeploy.spec import LoadedSpec, parse_spec_text

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfGRy7nL8mj9zCsOYvIaPeU/TV/uHS4zQUvQVaNO2Uf"

MINIMAL = f"""\
version: 1
name: chat
target:
  host: gpu-1.example.com
  host_key: "{HOST_KEY}"
model:
  name: meta-llama/Llama-3.1-8B-Instruct
runtime:
  image: vllm/vllm-openai:v0.9.2
"""


def load(text: str) -> LoadedSpec:
    return parse_spec_text(text, "bluegreen.yaml")


def problems(text: str) -> list[str]:
    """Rendered problems (FILE:LINE:COL: path: message) of an invalid spec text."""
    with pytest.raises(SpecError) as info:
        load(text)
    return info.value.render().splitlines()


@pytest.fixture
def minimal() -> str:
    return MINIMAL
