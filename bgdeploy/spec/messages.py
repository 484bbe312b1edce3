"""Turn JSON Schema validation errors into located, human messages with a fix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema.exceptions import ValidationError

from bgdeploy.errors import Problem
from bgdeploy.spec.checks import did_you_mean
from bgdeploy.spec.durations import DURATION_HINT, DURATION_PATTERN
from bgdeploy.spec.images import IMAGE_HINT, IMAGE_PATTERN
from bgdeploy.spec.models import (
    ENV_NAME_PATTERN,
    ENVIRONMENT_PATTERN,
    HOST_PATTERN,
    MODEL_NAME_PATTERN,
    NAME_PATTERN,
    PROMPT_NAME_PATTERN,
    REVISION_PATTERN,
    SERVED_NAME_PATTERN,
    SIZE_PATTERN,
    URL_PATH_PATTERN,
    USER_PATTERN,
    VOLUME_PATTERN,
)
from bgdeploy.spec.yaml_source import Located, Path, dotted, is_boolean_word

PATTERN_HINTS = {
    DURATION_PATTERN: f"expected {DURATION_HINT}",
    NAME_PATTERN: (
        "must be lowercase letters, digits and hyphens, start with a letter, not end with a hyphen, "
        "at most 40 characters (it names containers and the router config)"
    ),
    PROMPT_NAME_PATTERN: "must be letters, digits, '_', '.', '-' (at most 64), starting with a letter or digit",
    ENV_NAME_PATTERN: "must be an environment variable name: letters, digits and '_', not starting with a digit",
    IMAGE_PATTERN: IMAGE_HINT,
    MODEL_NAME_PATTERN: (
        "must be a model id or path (letters, digits and _ . / : + -, at most 255, not starting with '-', "
        "':' or '+'), e.g. meta-llama/Llama-3.1-8B-Instruct or /models/llama"
    ),
    SERVED_NAME_PATTERN: (
        "must be letters, digits and _ . / : + - (at most 128), starting with a letter, digit, '_' or '.', "
        "e.g. chat"
    ),
    REVISION_PATTERN: "must be a branch, tag or commit: letters, digits and _ . / + - (at most 128), e.g. main",
    HOST_PATTERN: "must be a host name or an IP address, e.g. gpu1.example.com or 10.0.0.5",
    USER_PATTERN: "must be a user name: letters, digits, '_', '.', '-' (at most 32), not starting with a digit",
    ENVIRONMENT_PATTERN: (
        "must be a GitHub environment name: letters, digits, spaces and _ . / - (at most 255), e.g. production"
    ),
    VOLUME_PATTERN: "must be HOST_PATH:CONTAINER_PATH or HOST_PATH:CONTAINER_PATH:ro",
    SIZE_PATTERN: "must be a size such as 16g, 512m or a number of bytes",
    URL_PATH_PATTERN: "must be a URL path starting with '/', e.g. /health",
}

_JSON_TYPES = {
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping (key: value)",
    "null": "nothing",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the number {value}"
    if isinstance(value, float):
        return f"the number {value:g}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _expected(types: Any) -> str:
    names = [types] if isinstance(types, str) else list(types)
    return " or ".join(_JSON_TYPES.get(t, t) for t in names)


def _type_message(error: ValidationError, raw: str | None) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if schema.get("pattern") == DURATION_PATTERN:
        message = f"expected {DURATION_HINT}, got {_json_type(error.instance)}"
    else:
        message = f"expected {_expected(error.validator_value)}, got {_json_type(error.instance)}"
    if isinstance(error.instance, bool) and is_boolean_word(raw):
        message += f" (YAML reads {raw} as a boolean: put it in quotes)"
    return message


def _range_message(error: ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    low_word = "more than" if "exclusiveMinimum" in schema else "at least"
    high_word = "less than" if "exclusiveMaximum" in schema else "at most"
    if low is not None and high is not None and low_word == "at least" and high_word == "at most":
        return f"must be from {low:g} to {high:g}, got {error.instance:g}"
    if low is not None and high is not None:
        return f"must be {low_word} {low:g} and {high_word} {high:g}, got {error.instance:g}"
    if low is not None:
        return f"must be {low_word} {low:g}, got {error.instance:g}"
    return f"must be {high_word} {high:g}, got {error.instance:g}"


def problems_from(error: ValidationError, doc: Located) -> Iterator[Problem]:
    """One or more problems for one schema error (an unknown-keys error yields one per key)."""
    path: Path = tuple(error.absolute_path)
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    expected: Any = error.validator_value

    def at(where: Path, message: str, *, key: bool = False) -> Problem:
        line, col = doc.locate(where, key=key)
        return Problem(dotted(where), message, line, col)

    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        for name in error.instance:
            if name not in allowed:
                hint = did_you_mean(name, allowed) or f"; allowed here: {', '.join(allowed)}"
                yield at((*path, name), f"unknown key {name!r}{hint}", key=True)
    elif kind == "required" and isinstance(error.instance, dict):
        for name in expected:
            if name not in error.instance:
                where = dotted((*path, name))
                yield at(path, f"missing required key {name!r} ({where})", key=True)
    elif kind == "type":
        yield at(path, _type_message(error, doc.raw_scalars.get(path)))
    elif kind == "pattern":
        hint = PATTERN_HINTS.get(str(error.validator_value), f"must match {error.validator_value}")
        yield at(path, f"{hint}, got {_json_type(error.instance)}")
    elif kind == "enum":
        choices = [str(c) for c in expected]
        yield at(
            path,
            f"must be one of {', '.join(choices)}; got {_json_type(error.instance)}"
            f"{did_you_mean(str(error.instance), choices)}",
        )
    elif kind == "const":
        yield at(path, f"must be {error.validator_value!r}, got {_json_type(error.instance)}")
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        yield at(path, _range_message(error))
    elif kind == "minLength" and error.validator_value == 1:
        yield at(path, "must not be empty")
    elif kind == "minItems":
        yield at(path, f"must list at least {error.validator_value} item(s)")
    elif kind == "anyOf" and any(str(s.get("pattern", "")).endswith("%$") for s in expected):
        # rollout.fleet.batch and first_batch: a number of hosts or a percentage of the fleet
        yield at(path, f"must be a number of hosts (1 or more) or a percentage such as '25%'; got {error.instance!r}")
    else:
        yield at(path, error.message)
