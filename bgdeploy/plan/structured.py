"""Structured answers: JSON valid against a schema (structured outputs) and tool calls. Pure.

Strict on purpose, as `expect.json` is: a model that wraps JSON in a ```json fence, or calls a tool with
arguments that do not parse, has not answered as asked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from bgdeploy.spec.models import Expect

_SHOWN = 80


@dataclass(frozen=True)
class ToolCall:
    """One function call in an answer; `arguments` as the model wrote them (JSON text, maybe invalid)."""

    name: str
    arguments: str


def _where(error: ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f" at {path.lstrip('.')}" if path else ""


def _schema_failure(what: str, value: Any, schema: dict[str, Any]) -> str | None:
    errors = sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    message = first.message if len(first.message) <= _SHOWN else first.message[:_SHOWN] + "…"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{what} does not match its schema: {message}{_where(first)}{more}"


def structured_failures(expect: Expect, text: str, calls: Sequence[ToolCall]) -> list[str]:
    """What `expect.json_schema` and `expect.tool_call` find wrong with an answer."""
    failures: list[str] = []
    if expect.json_schema is not None:
        try:
            value = json.loads(text.strip())
        except json.JSONDecodeError as exc:
            failures.append(f"not valid JSON for json_schema ({exc.msg} at char {exc.pos})")
        else:
            found = _schema_failure("the answer", value, expect.json_schema)
            if found:
                failures.append(found)
    wanted = expect.tool_call
    if wanted is not None:
        matching = [call for call in calls if call.name == wanted.name]
        if not matching:
            made = ", ".join(sorted({call.name for call in calls})) or "none"
            failures.append(f"no call to tool {wanted.name!r} (calls made: {made})")
        elif wanted.arguments_schema is not None:
            call = matching[0]
            try:
                arguments = json.loads(call.arguments or "{}")
            except json.JSONDecodeError as exc:
                failures.append(f"the arguments of {wanted.name!r} are not JSON ({exc.msg} at char {exc.pos})")
            else:
                found = _schema_failure(f"the arguments of {wanted.name!r}", arguments, wanted.arguments_schema)
                if found:
                    failures.append(found)
    return failures


def canonical_calls(calls: Sequence[ToolCall]) -> tuple[tuple[str, str], ...]:
    """Tool calls in a form that compares equal when the model made the same calls (arguments re-serialised)."""
    out: list[tuple[str, str]] = []
    for call in calls:
        try:
            arguments = json.dumps(json.loads(call.arguments or "{}"), sort_keys=True)
        except json.JSONDecodeError:
            arguments = call.arguments
        out.append((call.name, arguments))
    return tuple(out)
