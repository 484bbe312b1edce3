"""Read a policy file: YAML with positions → JSON Schema → models; every problem located, reported together."""

from __future__ import annotations

from dataclasses import dataclass

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from pydantic import ValidationError as PydanticValidationError

from bgdeploy.errors import Problem
from bgdeploy.policy.errors import PolicyFileError
from bgdeploy.policy.models import ENV_GLOB_PATTERN, GLOB_PATTERN, HOST_SOURCE_PATTERN, SIZE_PATTERN, Policy
from bgdeploy.policy.schema import policy_schema
from bgdeploy.spec.messages import problems_from
from bgdeploy.spec.yaml_source import Located, YamlProblems, decode, dotted, parse

_HINTS = {
    GLOB_PATTERN: "must be a glob pattern without spaces (at most 512 characters), e.g. vllm/vllm-openai:*",
    HOST_SOURCE_PATTERN: "must be an absolute directory such as /srv/models, or a Docker volume name",
    ENV_GLOB_PATTERN: "must be an environment variable name or a glob of names, e.g. LD_*",
    SIZE_PATTERN: "must be a size such as 32g, 512m or a number of bytes",
}


def _problems(error: ValidationError, located: Located) -> list[Problem]:
    hint = _HINTS.get(str(error.validator_value)) if error.validator == "pattern" else None
    if hint is None:
        return list(problems_from(error, located))
    path = tuple(error.absolute_path)
    line, col = located.locate(path)
    return [Problem(dotted(path), f"{hint}, got {error.instance!r}", line, col)]


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    path: str  # where it was read, as shown in messages (host:path for a remote file)
    located: Located


def parse_policy_bytes(raw: bytes, filename: str) -> LoadedPolicy:
    """Validate policy file contents; raise PolicyFileError carrying every problem."""
    try:
        located = parse(decode(raw))
    except YamlProblems as exc:
        raise PolicyFileError(filename, exc.problems) from None
    data = located.data
    if not isinstance(data, dict):
        raise PolicyFileError(filename, [Problem("", "a policy is a mapping starting with `version: 1`", 1, 1)])
    errors = list(Draft202012Validator(policy_schema()).iter_errors(data))
    typed = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    errors = [e for e in errors if e.validator == "type" or tuple(e.absolute_path) not in typed]
    problems = [p for error in errors for p in _problems(error, located)]
    if problems:
        raise PolicyFileError(filename, problems)
    try:
        policy = Policy.model_validate(data)
    except PydanticValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            line, col = located.locate(loc)
            problems.append(Problem(dotted(loc), err["msg"], line, col))
        raise PolicyFileError(filename, problems) from None
    return LoadedPolicy(policy, filename, located)
