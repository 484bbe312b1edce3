"""The committed schema matches the models; the CLI's commands, messages and exit codes."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from bgdeploy import __version__
from bgdeploy.cli import main
from bgdeploy.spec.schema import schema_text
from tests.unit.conftest import MINIMAL

ROOT = Path(__file__).parents[2]
SCHEMA_FILE = ROOT / "schema" / "bluegreen.schema.json"


def test_committed_schema_has_not_drifted_from_the_models() -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), (
        "schema/bluegreen.schema.json is stale: run `bgdeploy schema > schema/bluegreen.schema.json`"
    )


def test_schema_is_a_valid_draft_2020_12_schema_with_descriptions() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    runtime = schema["$defs"]["Runtime"]["properties"]
    assert all("description" in prop for prop in runtime.values())
    assert schema["additionalProperties"] is False


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == SCHEMA_FILE.read_text()


def test_validate_prints_a_one_line_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bluegreen.yaml"
    spec.write_text(MINIMAL)
    assert main(["validate", "-f", str(spec)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert "valid: chat serves meta-llama/Llama-3.1-8B-Instruct" in out[0]
    assert "root@gpu-1.example.com:22 over ssh" in out[0]


def test_validate_reports_github_annotations_under_actions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "bluegreen.yaml"
    spec.write_text(MINIMAL + "helth: {}\nrouter: {listen: 0}\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert main(["validate", "-f", str(spec)]) == 2
    captured = capsys.readouterr()
    annotations = [line for line in captured.out.splitlines() if line.startswith("::error")]
    assert annotations == [
        f"::error file={spec},line=10,col=1,title=bluegreen.yaml::helth: unknown key 'helth'; did you mean 'health'?",
        f"::error file={spec},line=11,col=18,title=bluegreen.yaml::router.listen: must be from 1 to 65535, got 0",
    ]
    assert f"{spec}:10:1: helth: unknown key" in captured.err


def test_annotations_escape_newlines_and_percent_signs() -> None:
    from bgdeploy.github.workflow_commands import error

    assert error("50%\nline two", file="a,b:c.yaml", line=1) == "::error file=a%2Cb%3Ac.yaml,line=1::50%25%0Aline two"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate", "--bogus"])
    assert info.value.code == 2
    assert main([]) == 2
    assert "validate" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"bgdeploy {__version__} (commit ")


def test_validate_stays_light_no_ssh_docker_or_http_imports(tmp_path: Path) -> None:
    spec = tmp_path / "bluegreen.yaml"
    spec.write_text(MINIMAL)
    code = (
        "import sys\nfrom bgdeploy.cli import main\n"
        f"rc = main(['validate', '-f', {str(spec)!r}])\n"
        "heavy = sorted(m for m in ('paramiko', 'docker', 'httpx') if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip().splitlines()[-1] == "0 []"


def test_pure_layers_import_no_transport_libraries() -> None:
    """spec -> plan -> execute -> transports: spec/, plan/, report/ and the analysis interface and verdicts never
    import down the stack (not even under TYPE_CHECKING), so they stay pure and unit-testable without a network."""
    forbidden = ("paramiko", "docker", "httpx", "requests", "bgdeploy.execute", "bgdeploy.transports")
    pure = [path for package in ("spec", "plan", "report") for path in (ROOT / "bgdeploy" / package).rglob("*.py")]
    pure += [ROOT / "bgdeploy" / "analysis" / name for name in ("source.py", "verdict.py")]
    for path in pure:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                bad = [f for f in forbidden if name == f or name.startswith(f + ".")]
                assert not bad, f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
