"""One spelling of --json everywhere, `schema` refuses -f, and --version names the commit."""

from __future__ import annotations

import pytest

from bgdeploy.cli import build_parser, main, write_json


def test_schema_refuses_a_spec_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["schema", "-f", "bluegreen.yaml"])
    assert exited.value.code == 2
    assert "unrecognized arguments: -f" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["plan", "deploy", "rollback", "status", "list", "history", "remove"])
def test_json_takes_an_optional_file_on_every_command(command: str) -> None:
    parser = build_parser()
    assert parser.parse_args([command, "--json"]).json == "-"
    assert parser.parse_args([command, "--json", "out.json"]).json == "out.json"
    assert parser.parse_args([command]).json is None


def test_write_json_prints_or_writes(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    write_json("-", '{"a": 1}')
    assert capsys.readouterr().out == '{"a": 1}\n'
    target = Path(str(tmp_path)) / "r.json"
    write_json(str(target), '{"a": 1}\n')
    assert target.read_text() == '{"a": 1}\n'


def test_version_names_the_commit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("bgdeploy ") and "(commit " in out
