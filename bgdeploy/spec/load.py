"""The one way to read bluegreen.yaml: YAML with positions → JSON Schema → pydantic models → cross checks.

Every problem is collected and raised together as a SpecError; nothing remote happens before this passes.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path as FsPath
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from bgdeploy.errors import Problem, SpecError, UsageError
from bgdeploy.spec.checks import cross_checks
from bgdeploy.spec.datasets import LoadedDataset, checkout_root, load_dataset
from bgdeploy.spec.messages import problems_from
from bgdeploy.spec.models import Spec
from bgdeploy.spec.release import release_hash, settings_digest
from bgdeploy.spec.schema import spec_schema
from bgdeploy.spec.yaml_source import Located, Path, YamlProblems, decode, dotted, parse


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec with where it came from."""

    spec: Spec
    path: str
    located: Located
    datasets: tuple[LoadedDataset, ...] = ()

    @property
    def spec_hash(self) -> str:
        """The release hash: what the colour's container runs (defaults filled in). Settings that do not change
        the container are left out, so that changing them never reloads the model (see spec/release.py)."""
        return release_hash(self.spec)

    @property
    def settings(self) -> dict[str, str]:
        """The other settings, by dotted key, as short hashes (recorded on the host to name what changed)."""
        return settings_digest(self.spec)


def _validator() -> Draft202012Validator:
    return Draft202012Validator(spec_schema())


def parse_spec_text(
    text: str, filename: str, *, base_dir: str | None = None, environ: Mapping[str, str] | None = None
) -> LoadedSpec:
    """Validate spec text and the eval sets it names; raise SpecError carrying every problem.

    Dataset paths are relative to `base_dir` (default: the spec file's directory).
    """
    spec_dir = FsPath(base_dir if base_dir is not None else os.path.dirname(filename) or ".")
    env = os.environ if environ is None else environ
    try:
        located = parse(text)
    except YamlProblems as exc:
        raise SpecError(filename, exc.problems) from None
    data = located.data
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        problem = Problem("", f"the top level is {kind}; a spec is a mapping starting with `version: 1`", 1, 1)
        raise SpecError(filename, [problem])

    errors = list(_validator().iter_errors(data))
    typed = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    # A wrong type explains every other complaint about the same value: report only that one.
    errors = [e for e in errors if e.validator == "type" or tuple(e.absolute_path) not in typed]
    problems = [p for error in errors for p in problems_from(error, located)]

    if problems:
        # Still run the cross checks that only read sound keys, so the user gets every problem at once.
        broken = [path for error in errors for path in _broken_paths(error)]
        partial, unusable = _lenient_spec(_without(data, broken))
        names = tuple(dotted(b) for b in broken) + unusable
        for path, message in cross_checks(partial, broken=names):
            line, col = located.locate(path)
            problems.append(Problem(dotted(path), message, line, col))
        if not any(n == "validation" or n.startswith("validation.datasets") for n in names):
            problems += _load_datasets(partial, located, spec_dir, env)[1]
        raise SpecError(filename, problems)

    try:
        spec = Spec.model_validate(data)
    except PydanticValidationError as exc:
        # The schema is generated from the models, so this is rare; still report it located.
        for err in exc.errors():
            loc = tuple(err["loc"])
            line, col = located.locate(loc)
            problems.append(Problem(dotted(loc), err["msg"], line, col))
        raise SpecError(filename, problems) from None
    for path, message in cross_checks(spec):
        line, col = located.locate(path)
        problems.append(Problem(dotted(path), message, line, col))
    datasets, found = _load_datasets(spec, located, spec_dir, env)
    problems += found
    if problems:
        raise SpecError(filename, problems)
    return LoadedSpec(spec=spec, path=filename, located=located, datasets=datasets)


def _load_datasets(
    spec: Spec, located: Located, spec_dir: FsPath, environ: Mapping[str, str]
) -> tuple[tuple[LoadedDataset, ...], list[Problem]]:
    """Every eval set the spec names, streamed and sampled; a file that cannot be used is a problem at its path."""
    if not spec.validation.datasets:
        return (), []
    root = checkout_root(spec_dir, environ)
    loaded: list[LoadedDataset] = []
    problems: list[Problem] = []
    for i, dataset in enumerate(spec.validation.datasets):
        where = ("validation", "datasets", i, "path")
        try:
            result, found = load_dataset(dataset, spec_dir, root)
        except ValueError as exc:
            line, col = located.locate(where)
            problems.append(Problem(dotted(where), f"{dataset.path}: {exc}", line, col))
            continue
        loaded.append(result)
        # Named as from the working directory, like the spec itself, so editors and annotations find the line.
        shown = os.path.normpath(os.path.join(spec_dir, dataset.path))
        problems += [replace(p, file=shown) for p in found]
    return tuple(loaded), problems


def _lenient_spec(data: dict[str, Any]) -> tuple[Spec, tuple[str, ...]]:
    """A Spec built section by section from partly broken data, and the sections that could not be built."""
    sections: dict[str, Any] = {}
    unusable: list[str] = []
    for name, field in Spec.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        if name not in data and field.is_required():
            unusable.append(name)
            continue
        try:
            sections[name] = model.model_validate(data.get(name, {}))
        except PydanticValidationError:
            unusable.append(name)
    return Spec.model_construct(**sections), tuple(unusable)


def _broken_paths(error: ValidationError) -> list[Path]:
    """Where the value that caused a schema error sits (unknown keys: each of them)."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        return [(*path, key) for key in error.instance if key not in allowed]
    return [path]


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def _without(data: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    """A copy of `data` with the broken values removed, so that defaults take their place.

    Lets the cross checks of the sections that are fine run even when others are broken, so the user
    gets every problem at once. A broken list item drops its whole list (indexes must not shift).
    """
    result: dict[str, Any] = copy.deepcopy(data)
    for path in sorted(paths, key=len, reverse=True):
        while path:
            parent: Any = result
            for part in path[:-1]:
                parent = _child(parent, part)
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
                break
            path = path[:-1]
    return result


def load_spec(path: str) -> LoadedSpec:
    """Read and validate a spec file."""
    fs_path = FsPath(path)
    if fs_path.is_dir():
        raise UsageError(f"{path} is a directory; pass the spec file itself with -f, e.g. -f {path}/bluegreen.yaml")
    try:
        raw = fs_path.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"{path}: no such file; create it (see examples/ for a start) or pass another path with -f"
        ) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the spec: {exc.strerror}; check the path and its permissions") from None
    try:
        text = decode(raw)
    except YamlProblems as exc:
        raise SpecError(path, exc.problems) from None
    return parse_spec_text(text, path)
