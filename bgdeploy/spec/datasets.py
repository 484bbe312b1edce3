"""Eval sets: JSON Lines files of prompts next to the spec, read line by line, sampled with a seed.

A file is streamed (never held whole): every line is checked, so a bad line anywhere is reported as
`FILE:LINE:COL: what; fix` with the spec's other problems, and only the sampled prompts are kept
(reservoir sampling: the same file and seed always give the same prompts). A dataset path may not
leave the repository checkout: not absolute, no `..`, no symlink pointing out of it.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from bgdeploy.errors import Problem
from bgdeploy.spec.checks import did_you_mean, prompt_findings
from bgdeploy.spec.models import Dataset, Prompt
from bgdeploy.spec.yaml_source import dotted

# One line longer than this is refused instead of being read into memory.
MAX_LINE_BYTES = 1024 * 1024
# Deeper JSON than this is refused: Python's json, pydantic and jsonschema recurse, and a line of `[[[[...` (or a
# json_schema nested as deep) would otherwise end the whole spec check with a RecursionError instead of FILE:LINE.
MAX_DEPTH = 64
# After this many bad lines a file's further problems are summed up in one, so a wrong file cannot flood the output.
MAX_PROBLEMS_PER_FILE = 20


@dataclass(frozen=True)
class LoadedDataset:
    """The prompts sampled from one eval set; their names are `PATH:LINE` (or `PATH:NAME` when a line names it)."""

    path: str
    prompts: tuple[Prompt, ...]
    total: int  # prompts in the file
    sample: int | None
    seed: int


def checkout_root(spec_dir: Path, environ: Mapping[str, str]) -> Path:
    """The repository checkout that holds the spec: GITHUB_WORKSPACE, else the git root, else the spec's directory."""
    spec_dir = spec_dir.resolve()
    workspace = environ.get("GITHUB_WORKSPACE")
    if workspace:
        root = Path(workspace).resolve()
        if spec_dir == root or root in spec_dir.parents:
            return root
    for folder in (spec_dir, *spec_dir.parents):
        if (folder / ".git").exists():
            return folder
    return spec_dir


def confined_path(written: str, spec_dir: Path, root: Path) -> Path:
    """The file a dataset path names; ValueError (with the fix) when it would leave the checkout."""
    if os.path.isabs(written) or "\\" in written:
        raise ValueError("must be a path relative to the spec file, with / as separator")
    if ".." in Path(written).parts:
        raise ValueError("must not contain `..`: keep eval sets inside the repository, next to the spec")
    target = (spec_dir / written).resolve()
    root = root.resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"resolves outside the repository checkout ({root}), through a symlink; copy the file in")
    return target


# A problem may quote a value of the line (a tool name, a schema): cut, like keys (MAX_KEY_SHOWN).
MAX_MESSAGE_SHOWN = 400


def _line_problem(file: str, line: int, column: int, path: tuple[str | int, ...], message: str) -> Problem:
    if len(message) > MAX_MESSAGE_SHOWN:
        message = message[: MAX_MESSAGE_SHOWN - 3] + "..."
    return Problem(dotted(path), message, line, column, file=file)


# A key is quoted in a problem (its path, "unknown key ..."): cut, so a line of megabyte keys cannot make
# megabytes of output (20 problems shown per file).
MAX_KEY_SHOWN = 64


def _shown(key: str | int) -> str | int:
    if isinstance(key, int) or len(key) <= MAX_KEY_SHOWN:
        return key
    return key[: MAX_KEY_SHOWN - 3] + "..."


def _pydantic_problems(file: str, line: int, exc: ValidationError) -> Iterator[Problem]:
    for err in exc.errors():
        loc = tuple(_shown(part) for part in err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden" and loc:
            key = str(loc[-1])
            choices = list(Prompt.model_fields) if len(loc) == 1 else []
            hint = did_you_mean(key, choices) or "; a line has the keys of an inline prompt"
            message = f"unknown key {key!r}{hint}"
        elif err["type"] == "missing":
            message = "missing; add it"
        yield _line_problem(file, line, 1, loc, message)


def _too_deep(data: Any) -> bool:
    """Whether `data` nests lists and objects deeper than MAX_DEPTH (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def parse_line(raw: bytes, file: str, line: int) -> tuple[Prompt | None, list[Problem]]:
    """One line as a prompt (None for a blank line), with what is wrong with it."""
    if len(raw) > MAX_LINE_BYTES:
        limit = MAX_LINE_BYTES // 1024
        return None, [_line_problem(file, line, 1, (), f"longer than {limit} KiB; split the conversation")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [_line_problem(file, line, exc.start + 1, (), "not UTF-8; save the file as UTF-8")]
    if not text.strip():
        return None, []
    deep = f"nested deeper than {MAX_DEPTH} levels; flatten the prompt"
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [_line_problem(file, line, exc.colno, (), f"not JSON ({exc.msg}); each line is one JSON object")]
    except RecursionError:
        return None, [_line_problem(file, line, 1, (), deep)]
    except ValueError:  # an integer of more digits than Python converts (4300 by default)
        return None, [_line_problem(file, line, 1, (), "not usable JSON (a number with thousands of digits)")]
    if _too_deep(data):
        return None, [_line_problem(file, line, 1, (), deep)]
    if not isinstance(data, dict):
        return None, [_line_problem(file, line, 1, (), 'a line must be a JSON object such as {"chat": "..."}')]
    named = "name" in data
    data.setdefault("name", f"L{line}")
    try:
        prompt = Prompt.model_validate(data)
    except ValidationError as exc:
        return None, list(_pydantic_problems(file, line, exc))
    problems = [_line_problem(file, line, 1, path, message) for path, message in prompt_findings(prompt)]
    if problems:
        return None, problems
    qualified = f"{file}:{prompt.name}" if named else f"{file}:{line}"
    return prompt.model_copy(update={"name": qualified}), []


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    """The file's lines, each read with a bound: of a longer line only its first MAX_LINE_BYTES + 1 bytes are
    held (enough for parse_line to refuse it), the rest is skipped in chunks, so one huge line costs no memory."""
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while True:
                rest = handle.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
        yield raw


def load_dataset(dataset: Dataset, spec_dir: Path, root: Path) -> tuple[LoadedDataset, list[Problem]]:
    """Read one eval set line by line: every line checked, a seeded reservoir sample of the prompts kept.

    Raises ValueError when the file cannot be used at all (outside the checkout, missing, unreadable).
    """
    target = confined_path(dataset.path, spec_dir, root)
    try:
        is_file = target.is_file()
    except OSError as exc:  # a name too long, a loop of symlinks...
        raise ValueError(f"cannot read it: {exc.strerror}") from exc
    if not is_file:
        raise ValueError("no such file (paths are relative to the spec file); create it or fix the path")
    rng = random.Random(dataset.seed)
    kept: list[tuple[int, Prompt]] = []
    problems: list[Problem] = []
    names: dict[str, int] = {}
    total = 0
    bad = 0
    try:
        with target.open("rb") as handle:
            for number, raw in enumerate(_lines(handle), start=1):
                prompt, found = parse_line(raw.rstrip(b"\r\n"), dataset.path, number)
                if found:
                    bad += 1
                    if bad <= MAX_PROBLEMS_PER_FILE:
                        problems += found
                    continue
                if prompt is None:
                    continue
                if prompt.name in names:
                    bad += 1
                    problems.append(
                        _line_problem(
                            dataset.path, number, 1, ("name",), f"the name is already used on line {names[prompt.name]}"
                        )
                    )
                    continue
                names[prompt.name] = number
                # Algorithm R: after n prompts each has had the same chance, sample/n, to be kept.
                if dataset.sample is None or total < dataset.sample:
                    kept.append((number, prompt))
                else:
                    slot = rng.randrange(total + 1)
                    if slot < dataset.sample:
                        kept[slot] = (number, prompt)
                total += 1
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror}") from exc
    if bad > MAX_PROBLEMS_PER_FILE:
        problems.append(
            _line_problem(
                dataset.path, 1, 1, (), f"{bad} bad lines in all, only the first {MAX_PROBLEMS_PER_FILE} shown"
            )
        )
    if total == 0 and not problems:
        problems.append(
            _line_problem(dataset.path, 1, 1, (), "the eval set has no prompts; add one JSON object a line")
        )
    prompts = tuple(prompt for _, prompt in sorted(kept, key=lambda item: item[0]))
    return LoadedDataset(dataset.path, prompts, total, dataset.sample, dataset.seed), problems
