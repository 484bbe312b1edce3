"""The JSON Schema of the host policy file, generated from the models; committed as schema/policy.schema.json."""

from __future__ import annotations

import functools
from typing import Any

from bgdeploy.policy.models import Policy
from bgdeploy.spec.schema import file_schema, schema_json

SCHEMA_ID = "https://bgdeploy.dev/schema/policy.schema.json"


@functools.lru_cache(maxsize=1)
def policy_schema() -> dict[str, Any]:
    return file_schema(Policy, SCHEMA_ID)


def policy_schema_text() -> str:
    """The schema exactly as committed in schema/policy.schema.json."""
    return schema_json(policy_schema())
