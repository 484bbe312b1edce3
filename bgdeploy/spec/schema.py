"""The JSON Schema (Draft 2020-12) of bluegreen.yaml, generated from the pydantic models.

`schema/bluegreen.schema.json` is this output, committed; a test fails when the two drift apart.
Optional keys are written as their plain type: `null` is never a valid value in the file.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from bgdeploy.spec.models import Spec

SCHEMA_ID = "https://bgdeploy.dev/schema/bluegreen.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _FileSchema(GenerateJsonSchema):
    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        # An absent key means "use the default"; an explicit null is a mistake we want reported.
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


def file_schema(model: type[BaseModel], schema_id: str) -> dict[str, Any]:
    """The Draft 2020-12 schema of a file read into `model` (bluegreen.yaml, the host policy)."""
    body = model.model_json_schema(schema_generator=_FileSchema, mode="validation")
    _drop_null_defaults(body)
    return {"$schema": DIALECT, "$id": schema_id, **body}


def schema_json(schema: dict[str, Any]) -> str:
    """A schema exactly as committed under schema/."""
    return json.dumps(schema, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


@functools.lru_cache(maxsize=1)
def spec_schema() -> dict[str, Any]:
    """The schema as a dict (cached: it is immutable once made)."""
    return file_schema(Spec, SCHEMA_ID)


def schema_text() -> str:
    """The schema exactly as committed in schema/bluegreen.schema.json."""
    return schema_json(spec_schema())
