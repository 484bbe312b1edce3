"""Hostile or broken input: a clear located error (exit 2), never a traceback, a hang or code execution."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgdeploy.cli import main
from bgdeploy.errors import SpecError, UsageError
from bgdeploy.spec import load_spec
from tests.unit.conftest import MINIMAL, problems

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "bluegreen.yaml:1:1: file is empty"),
        ("# only a comment\n", "bluegreen.yaml:1:1: file is empty"),
        ("- a\n- b\n", "bluegreen.yaml:1:1: the top level is a list; a spec is a mapping"),
        ("just words\n", "bluegreen.yaml:1:1: the top level is a single value"),
        ("version: 1\nname: [unclosed\n", "bluegreen.yaml:3:1: YAML syntax error"),
        ("version: 1\ntarget:\n\thost: x\n", "bluegreen.yaml:3:1: tab character: YAML does not allow tabs"),
        ("version: 1\n---\nversion: 1\n", "several YAML documents (---) in one file"),
        (BILLION_LAUGHS, "values once aliases are expanded (an alias bomb?)"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "bluegreen.yaml:1:"),
        ("a: &x [*x]\n", "nesting deeper than"),
        ("port: " + "9" * 5000 + "\n", "number too large"),
        ("port: 99999999999999999999999\n", "number too large"),
        ("x: .nan\n", "'.nan' is not a finite number"),
        (
            "x: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
            "tag tag:yaml.org,2002:python/object/apply:os.system is not allowed",
        ),
        ("x: !!python/name:os.system\n", "is not allowed (nothing in a spec is ever executed)"),
        ("x: !custom 1\n", "tag !custom is not allowed"),
        ("x: !!binary aGVsbG8=\n", "is not allowed"),
        ("? [a, b]\n: c\n", "a mapping key must be a plain word"),
        ("x: \x07bell\n", "character '\\x07' (0x7) is not allowed in YAML"),
    ],
)
def test_broken_input_gets_a_clear_error(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in f for f in found), found


def test_deep_nesting_names_the_limit() -> None:
    found = problems("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert found == ["bluegreen.yaml:1:43: nesting deeper than 40 levels: a spec is never this deep"]


def test_duplicate_keys_are_an_error_at_the_second_one() -> None:
    found = problems(MINIMAL + "name: other\n")
    assert found == ["bluegreen.yaml:10:1: name: duplicate key 'name': first defined at line 2; remove one of them"]


def test_python_tags_never_execute(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    problems(f"x: !!python/object/apply:os.system ['touch {marker}']\n")
    assert not marker.exists()


def test_nul_bytes_and_bad_utf8_are_refused(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"version: 1\n\x00\x01\x02")
    with pytest.raises(SpecError) as info:
        load_spec(str(binary))
    assert "2:1: file contains NUL bytes" in info.value.render()
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(SpecError) as info:
        load_spec(str(latin))
    assert "2:1: invalid UTF-8" in info.value.render()


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 * 1024 * 1024) + "\n")
    with pytest.raises(SpecError) as info:
        load_spec(str(big))
    assert "a spec is at most 1048576 bytes" in info.value.render()


def test_missing_file_and_directory_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file; create it"):
        load_spec(str(tmp_path / "nope.yaml"))
    with pytest.raises(UsageError, match="is a directory; pass the spec file itself"):
        load_spec(str(tmp_path))


@pytest.mark.parametrize(
    "content",
    [b"", b"- 1\n", b"a: [\n", b"\x00\xff\xfe", b"a: &x [*x]\n", b"x: !!python/object/apply:os.system [id]\n"],
)
def test_cli_exits_2_without_a_traceback(tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bluegreen.yaml"
    spec.write_bytes(content)
    assert main(["validate", "-f", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nothing was changed" in err


def test_cli_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
