"""The composite action (action.yml), run step by step the way a GitHub runner runs it, without GitHub.

`actions/setup-python` is emulated (its `python-path` output is this interpreter); every `run:` step really runs,
with the runner's environment, env files and `bash --noprofile --norc -eo pipefail {0}`; the `${{ }}` expressions of
the steps' `env:` and of the action's `outputs:` are evaluated for the contexts the action uses. The install step
really creates the private venv under RUNNER_TEMP and pip-installs bgdeploy from this checkout (pip's registry is
the only network used): once per module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

ACTION = yaml.safe_load((REPO_ROOT / "action.yml").read_text())
TOKEN = "ghs_" + "FakeT0ken" * 4
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.DOTALL)
# Nothing in these tests may talk to GitHub: the API URL is a closed port on loopback.
NO_GITHUB = "http://127.0.0.1:9"


# -- a minimal GitHub runner for composite actions ---------------------------------------------------------------


def scalar(value: Any) -> str:
    """A YAML scalar as the runner sees it: a string (`false`, not Python's `False`; null is empty)."""
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def evaluate(text: Any, contexts: Mapping[str, Any]) -> str:
    """Expands the `${{ a.b.c }}` property accesses in text; anything else is an error (extend this then)."""

    def one(match: re.Match[str]) -> str:
        expr = match.group(1)
        if not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)+", expr):
            raise NotImplementedError(f"expression ${{{{ {expr} }}}}: only property accesses are emulated")
        head, *path = expr.split(".")
        if head not in contexts:
            raise NotImplementedError(f"expression ${{{{ {expr} }}}}: the {head!r} context is not emulated")
        value: Any = contexts[head]
        for key in path:
            if not isinstance(value, Mapping):
                return ""
            if head == "inputs" and key not in value:
                raise KeyError(f"${{{{ {expr} }}}}: action.yml declares no input {key!r}")
            value = value.get(key)  # a missing step output is "", as on GitHub
        return scalar(value)

    return EXPRESSION.sub(one, scalar(text))


def parse_env_file(text: str, what: str) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV: `name=value` lines, or `name<<DELIMITER`, value lines, `DELIMITER`."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            while i < len(lines) and lines[i] != delimiter:
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise AssertionError(f"{what}: no closing delimiter {delimiter!r} for {name!r}")
            i += 1
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        else:
            raise AssertionError(f"{what}: malformed line {line!r}")
    return values


@dataclass
class StepRun:
    name: str
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str


@dataclass
class ActionRun:
    steps: list[StepRun]
    outputs: dict[str, str]

    @property
    def code(self) -> int:
        """The exit code of the step that failed, else 0 (the job step's conclusion)."""
        return next((s.code for s in self.steps if s.code != 0), 0)

    @property
    def stdout(self) -> str:
        return "".join(s.stdout for s in self.steps)

    @property
    def summary(self) -> str:
        return "".join(s.summary for s in self.steps)


@dataclass
class Runner:
    """One job's runner: the workspace, RUNNER_TEMP, the env that GITHUB_ENV/GITHUB_PATH accumulate, and the
    outputs of the action's steps run so far (so a later call can run the remaining steps)."""

    workspace: Path
    temp: Path
    job_env: dict[str, str] = field(default_factory=dict)
    step_outputs: dict[str, dict[str, str]] = field(default_factory=dict)

    def base_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GITHUB_", "RUNNER_", "BGDEPLOY_", "INPUT_", "ACTIONS_"))
            and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CI")
        }
        event = self.temp / "event.json"
        if not event.exists():
            event.write_text(
                json.dumps({"inputs": {}, "ref": "refs/heads/main", "repository": {"default_branch": "main"}})
            )
        env.update(
            GITHUB_ACTIONS="true",
            CI="true",
            GITHUB_ACTION_PATH=str(REPO_ROOT),
            GITHUB_WORKSPACE=str(self.workspace),
            RUNNER_TEMP=str(self.temp),
            GITHUB_EVENT_PATH=str(event),
            GITHUB_EVENT_NAME="workflow_dispatch",
            GITHUB_REF="refs/heads/main",
            GITHUB_SHA="0" * 40,
            GITHUB_REPOSITORY="octo/models",
            GITHUB_RUN_ID="1",
            GITHUB_SERVER_URL="https://github.com",
            GITHUB_API_URL=NO_GITHUB,
        )
        env.update(self.job_env)
        env.update(extra)
        return env

    def run(
        self, with_: Mapping[str, str], env: Mapping[str, str] | None = None, first: int = 0, last: int | None = None
    ) -> ActionRun:
        """Runs steps first..last of the action (all by default) as `uses: ./` with `with_`, then evaluates the
        action's outputs. A failing step skips the rest, as `if: success()` does."""
        declared = ACTION["inputs"]
        unknown = set(with_) - set(declared)
        assert not unknown, f"inputs not declared in action.yml: {unknown}"
        github = {"token": TOKEN}
        # Defaults may hold expressions themselves (github-token: ${{ github.token }}).
        inputs = {
            name: scalar(with_[name]) if name in with_ else evaluate(spec.get("default"), {"github": github})
            for name, spec in declared.items()
        }
        runs: list[StepRun] = []
        steps = ACTION["runs"]["steps"][first:last]
        for index, step in enumerate(steps, start=first):
            assert "if" not in step, "step conditions are not emulated: extend Runner.run"
            contexts = {"inputs": inputs, "steps": {k: {"outputs": v} for k, v in self.step_outputs.items()}}
            contexts["github"] = github
            step_id = step.get("id", f"__step{index}")
            name = step.get("name", step_id)
            result = self.uses(step, contexts) if "uses" in step else self.run_script(step, contexts, env or {})
            result.name = name
            runs.append(result)
            self.step_outputs[step_id] = result.outputs
            if result.code != 0:
                break
        contexts = {"steps": {k: {"outputs": v} for k, v in self.step_outputs.items()}}
        outputs = {name: evaluate(spec["value"], contexts) for name, spec in ACTION["outputs"].items()}
        return ActionRun(runs, outputs)

    def uses(self, step: Mapping[str, Any], contexts: Mapping[str, Any]) -> StepRun:
        action = step["uses"].split("@")[0]
        if action != "actions/setup-python":
            raise NotImplementedError(f"uses: {step['uses']} is not emulated")
        with_ = {k: evaluate(v, contexts) for k, v in (step.get("with") or {}).items()}
        assert with_.get("update-environment") == "false", "the action must not change the job's Python"
        version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
        outputs = {"python-version": version, "python-path": sys.executable, "cache-hit": "false"}
        return StepRun("", 0, "", "", outputs, "")

    def _prepare(
        self, step: Mapping[str, Any], contexts: Mapping[str, Any], extra: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str], Path, dict[str, Path]]:
        assert step.get("shell") == "bash", "composite run steps need shell: bash (the only shell emulated)"
        files = self.temp / "_runner_file_commands"
        files.mkdir(exist_ok=True)
        token = uuid.uuid4().hex
        paths = {var: files / f"{var.lower()}_{token}" for var in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH")}
        paths["GITHUB_STEP_SUMMARY"] = files / f"step_summary_{token}"
        for path in paths.values():
            path.touch()
        step_env = {k: evaluate(v, contexts) for k, v in (step.get("env") or {}).items()}
        env = self.base_env({**extra, **step_env, **{k: str(v) for k, v in paths.items()}})
        script = self.temp / f"{token}.sh"
        script.write_text(step["run"])
        cwd = self.workspace / evaluate(step.get("working-directory", "."), contexts)
        return ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], env, cwd, paths

    def _collect(self, paths: dict[str, Path], code: int, stdout: str, stderr: str) -> StepRun:
        outputs = parse_env_file(paths["GITHUB_OUTPUT"].read_text(), "GITHUB_OUTPUT")
        self.job_env.update(parse_env_file(paths["GITHUB_ENV"].read_text(), "GITHUB_ENV"))
        added = [p for p in paths["GITHUB_PATH"].read_text().splitlines() if p.strip()]
        if added:
            path = self.job_env.get("PATH", os.environ.get("PATH", ""))
            self.job_env["PATH"] = os.pathsep.join([*reversed(added), path])
        summary = paths["GITHUB_STEP_SUMMARY"].read_text()
        return StepRun("", code, stdout, stderr, outputs, summary)

    def run_script(self, step: Mapping[str, Any], contexts: Mapping[str, Any], extra: Mapping[str, str]) -> StepRun:
        argv, env, cwd, paths = self._prepare(step, contexts, extra)
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
        return self._collect(paths, proc.returncode, proc.stdout, proc.stderr)

    def start_step(
        self, index: int, with_: Mapping[str, str], env: Mapping[str, str]
    ) -> tuple[subprocess.Popen[str], Callable[[], StepRun]]:
        """Starts `run:` step `index` the way the runner does (the step's process is what a cancel signals) and
        returns it with a function that waits for it and collects its outputs."""
        declared = ACTION["inputs"]
        github = {"token": TOKEN}
        inputs = {
            name: scalar(with_[name]) if name in with_ else evaluate(spec.get("default"), {"github": github})
            for name, spec in declared.items()
        }
        contexts = {"inputs": inputs, "github": github, "steps": {}}
        argv, full_env, cwd, paths = self._prepare(ACTION["runs"]["steps"][index], contexts, env)
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def finish() -> StepRun:
            stdout, stderr = proc.communicate(timeout=300)
            return self._collect(paths, proc.returncode, stdout, stderr)

        return proc, finish


def describe(run: ActionRun) -> str:
    return "\n".join(f"--- {s.name}: exit {s.code}\n{s.stdout}{s.stderr}" for s in run.steps)


# -- the tests ---------------------------------------------------------------------------------------------------


STEPS = ACTION["runs"]["steps"]
BGDEPLOY_STEP = next(i for i, s in enumerate(STEPS) if s.get("id") == "bgdeploy")


def test_scripts_take_inputs_through_env_only() -> None:
    for step in STEPS:
        if "run" in step:
            assert "${{" not in step["run"], f"step {step.get('name')!r} expands an expression into its script"
            assert step.get("shell") == "bash"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> tuple[Runner, ActionRun]:
    """A runner whose steps before `bgdeploy` ran: Python set up, bgdeploy installed in RUNNER_TEMP."""
    root = tmp_path_factory.mktemp("runner")
    workspace, temp = root / "workspace", root / "temp"
    workspace.mkdir()
    temp.mkdir()
    bed = Runner(workspace, temp)
    # pip builds the checkout in place, and setuptools reuses build/lib: a module deleted from the checkout would
    # live on there and in the wheel. A runner's checkout is always fresh; here the build goes to RUNNER_TEMP.
    setuptools_cfg = temp / "setuptools-build.cfg"
    setuptools_cfg.write_text(f"[build]\nbuild_base = {temp / 'setuptools-build'}\n")
    bed.job_env["DIST_EXTRA_CONFIG"] = str(setuptools_cfg)
    setup = bed.run({}, last=BGDEPLOY_STEP)
    assert setup.code == 0, describe(setup)
    return bed, setup


def test_install_step_creates_the_venv_from_the_checkout(runner: tuple[Runner, ActionRun]) -> None:
    bed, setup = runner
    venv = bed.temp / "bgdeploy-venv"
    assert (venv / "bin" / "bgdeploy").is_file()
    version = re.search(r'^__version__ = "([^"]+)"', (REPO_ROOT / "bgdeploy" / "__init__.py").read_text(), re.M)
    assert version
    assert f"bgdeploy {version.group(1)}" in setup.stdout, describe(setup)
    # A real install into the venv (not an editable link to the checkout, not the test's own environment).
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bgdeploy, sys; print(bgdeploy.__file__); print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=bed.temp,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(venv), where
    assert Path(where[1]) == venv


def test_validate_a_valid_spec(runner: tuple[Runner, ActionRun]) -> None:
    bed, _ = runner
    spec = bed.workspace / "deploy" / "single-gpu.yaml"
    spec.parent.mkdir(exist_ok=True)
    shutil.copy(REPO_ROOT / "examples" / "single-gpu.yaml", spec)

    run = bed.run({"spec": "deploy/single-gpu.yaml", "mode": "validate"}, first=BGDEPLOY_STEP)

    assert run.code == 0, describe(run)
    assert run.outputs["outcome"] == "valid", describe(run)
    assert "bgdeploy: mode validate" in run.stdout
    assert "::error" not in run.stdout and "::warning" not in run.stdout, describe(run)
    assert f"::add-mask::{TOKEN}" in run.stdout  # the github-token input's default, masked first
    # Every step output the action's outputs read is one that `bgdeploy ci` wrote.
    read = [m.group(1) for spec in ACTION["outputs"].values() for m in EXPRESSION.finditer(spec["value"])]
    referenced = {expr.removeprefix("steps.bgdeploy.outputs.") for expr in read}
    assert referenced <= set(bed.step_outputs["bgdeploy"]), bed.step_outputs["bgdeploy"]


def test_an_invalid_spec_fails_with_annotations_and_a_summary(runner: tuple[Runner, ActionRun]) -> None:
    bed, _ = runner
    text = (REPO_ROOT / "examples" / "single-gpu.yaml").read_text()
    text = text.replace("gpu_memory_utilization: 0.45", "gpu_memory_utilization: 1.5")
    text = text.replace("\n  port: 8000\n", "\n  port: eighty\n")
    (bed.workspace / "bluegreen.yaml").write_text(text)  # the spec input's default
    lines = text.splitlines()
    port_line = lines.index("  port: eighty") + 1
    gpu_line = lines.index("  gpu_memory_utilization: 1.5") + 1

    run = bed.run({"mode": "validate"}, first=BGDEPLOY_STEP)

    assert run.code == 2, describe(run)
    assert run.outputs["outcome"] == "invalid", describe(run)
    annotations = re.findall(r"^::error file=([^,]+),line=(\d+),col=(\d+)[^:]*::(.*)$", run.stdout, re.M)
    assert {(f, int(line)) for f, line, _, _ in annotations} == {
        ("bluegreen.yaml", port_line),
        ("bluegreen.yaml", gpu_line),
    }, describe(run)
    assert any("runtime.port" in message for *_, message in annotations)
    summary = run.summary
    assert "Invalid spec" in summary and "2 problem(s)" in summary, summary
    assert "runtime.port" in summary and "gpu\\_memory\\_utilization" in summary, summary
    report = Path(run.outputs["report-path"])
    assert report.is_relative_to(bed.temp) and report.read_text() == summary


def test_cancelling_the_job_rolls_a_deploy_back_with_no_failed_request(
    runner: tuple[Runner, ActionRun], dep: Any
) -> None:
    """The runner cancels a job by signalling the step's process: SIGINT, then SIGTERM 7.5 s later. The action
    `exec`s bgdeploy, so that process is bgdeploy itself, which rolls the deploy back while blue keeps serving."""
    from tests.integration.deployments import Traffic

    bed, _ = runner
    key = Path(dep.testbed.key_file).read_text()
    env = {"GITHUB_API_URL": NO_GITHUB}
    inputs = {"spec": str(dep.spec_path), "mode": "deploy", "comment": "false", "ssh-private-key": key}
    dep.write("acme/chat-v1")
    first = bed.run(inputs, env=env, first=BGDEPLOY_STEP)
    assert first.code == 0 and first.outputs["outcome"] == "deployed", describe(first)

    dep.write("acme/chat-v2", env={"FAKEVLLM_LOAD_SECONDS": "60"})
    with Traffic(dep.url) as traffic:
        proc, finish = bed.start_step(BGDEPLOY_STEP, inputs, env)
        try:
            dep.wait_for(lambda: dep.container_status("green") == "running", 90, "green to start loading")
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=7.5)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)  # the runner's second signal
            step = finish()
        finally:
            if proc.poll() is None:
                proc.kill()
        dep.wait_for(lambda: traffic.sent > 20, 30, "traffic after the cancel")
    assert step.code == 1, f"{step.stdout}{step.stderr}"
    assert "interrupted" in step.stdout + step.stderr
    assert step.outputs.get("outcome") == "failed" and step.outputs.get("active-color") == "blue", step.outputs
    assert dep.container_status("green") == "absent"
    assert dep.serving_model() == "acme/chat-v1"
    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.models_sent() == {"acme/chat-v1"}
