"""Red-team (RT12) of eval sets: hostile lines and paths are FILE:LINE (or path) problems, never a crash, and a
huge line is not read into memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from bgdeploy.errors import SpecError
from bgdeploy.spec import parse_spec_text
from bgdeploy.spec.datasets import MAX_LINE_BYTES, load_dataset
from bgdeploy.spec.models import Dataset
from tests.unit.conftest import MINIMAL


def problems(tmp_path: Path, content: bytes, path: str = "evals/a.jsonl") -> str:
    (tmp_path / ".git").mkdir(exist_ok=True)
    (tmp_path / "evals").mkdir(exist_ok=True)
    (tmp_path / "evals/a.jsonl").write_bytes(content)
    spec = tmp_path / "bluegreen.yaml"
    spec.write_text(MINIMAL + f"validation:\n  datasets: [{{path: {json.dumps(path)}}}]\n")
    with pytest.raises(SpecError) as caught:
        parse_spec_text(spec.read_text(), str(spec), environ={})
    return caught.value.render()


GOOD = b'{"chat": "What is the capital of France?"}\n'


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 100_000 + b"]" * 100_000,  # beyond Python's recursion limit in json itself
        b'{"messages": [{"role": "user", "content": ' + b"[" * 990 + b"]" * 990 + b"}]}",
        # Parses, but pydantic and jsonschema would recurse through it.
        b'{"chat": "x", "expect": {"json_schema": ' + b'{"not": ' * 400 + b"{}" + b"}" * 400 + b"}}",
    ],
    ids=["json-bomb", "deep-messages", "deep-json-schema"],
)
def test_a_deeply_nested_line_is_a_file_line_problem(tmp_path: Path, line: bytes) -> None:
    text = problems(tmp_path, GOOD + line + b"\n")
    assert f"{tmp_path}/evals/a.jsonl:2:1: nested deeper than" in text, text


def test_a_number_python_cannot_read_is_a_file_line_problem(tmp_path: Path) -> None:
    text = problems(tmp_path, GOOD + b'{"chat": "x", "max_tokens": ' + b"9" * 5000 + b"}\n")
    assert f"{tmp_path}/evals/a.jsonl:2:1: not usable JSON" in text, text


def test_a_path_too_long_for_the_file_system_is_a_problem_at_the_path(tmp_path: Path) -> None:
    text = problems(tmp_path, GOOD, path="a" * 5000 + ".jsonl")
    assert "validation.datasets[0].path" in text and "cannot read it" in text, text


def test_a_huge_line_is_refused_without_being_read_whole(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(GOOD + b"a" * (32 * MAX_LINE_BYTES) + b"\n" + GOOD.replace(b"France", b"Spain"))
    tracemalloc.start()
    try:
        loaded, found = load_dataset(Dataset(path="a.jsonl"), tmp_path, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [p.line for p in found] == [2] and "longer than" in found[0].message
    assert loaded.total == 2  # the line after the huge one is still read, with its own number
    assert peak < 8 * MAX_LINE_BYTES, peak  # a few bounded buffers, not the 32 MiB line


def test_a_huge_unknown_key_is_cut_in_the_problem(tmp_path: Path) -> None:
    line = json.dumps({"chat": "x", "k" * 500_000: 1}).encode() + b"\n"
    text = problems(tmp_path, line * 30)
    assert len(text) < 20_000, len(text)
    assert f"{tmp_path}/evals/a.jsonl:1:1: {'k' * 61}...: unknown key '{'k' * 61}...'" in text, text[:300]


@pytest.mark.parametrize(
    "line",
    [
        {
            "chat": "w",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "expect": {"tool_call": {"name": "n" * 400_000}},
        },
        {"chat": "j", "expect": {"json_schema": {"type": "t" * 400_000}}},
    ],
    ids=["tool-name", "json-schema"],
)
def test_a_problem_quoting_a_huge_value_is_cut(tmp_path: Path, line: dict[str, object]) -> None:
    text = problems(tmp_path, json.dumps(line).encode() + b"\n")
    assert f"{tmp_path}/evals/a.jsonl:1:1: expect." in text and text.rstrip().endswith("..."), text[:300]
    assert len(text) < 2_000, len(text)
