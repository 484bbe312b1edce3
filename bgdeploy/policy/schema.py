"""The JSON Schema of the host policy file, generated from the models; committed as schema/policy.schema.json."""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from bgdeploy.policy.models import Policy

SCHEMA_ID = "https://bgdeploy.dev/schema/policy.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _FileSchema(GenerateJsonSchema):
    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        # An absent key means "the default"; an explicit null is a mistake to report.
        return self.generate_inner(schema["schema"])

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _drop_null_defaults(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("default", 0) is None:
            del node["default"]
        for value in node.values():
            _drop_null_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _drop_null_defaults(value)


@functools.lru_cache(maxsize=1)
def policy_schema() -> dict[str, Any]:
    body = Policy.model_json_schema(schema_generator=_FileSchema, mode="validation")
    _drop_null_defaults(body)
    return {"$schema": DIALECT, "$id": SCHEMA_ID, **body}


def policy_schema_text() -> str:
    """The schema exactly as committed in schema/policy.schema.json."""
    return json.dumps(policy_schema(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
