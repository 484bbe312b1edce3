"""The capture keeper's lifecycle on fakes: started with the bound before nginx opens the file, a keeper that
cannot run stops the deploy, and turning capture off removes the keeper and the capture directory."""

from __future__ import annotations

import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from bgdeploy.capture import keeper
from bgdeploy.errors import DeployFailed
from bgdeploy.plan.names import LABEL_PREFIX
from bgdeploy.transports.docker_engine import ContainerInfo
from tests.fakes.engine import FakeEngine
from tests.fakes.host import FakeHost
from tests.fakes.session import SPEC, fake_session

CAPTURE = SPEC + "validation:\n  replay: {capture: {sample: 0.5, max_bytes: 1m}}\n"


def test_capture_on_prepares_the_file_and_starts_the_keeper_with_its_bound() -> None:
    host, engine = FakeHost(), FakeEngine()
    session = fake_session(CAPTURE, host=host, engine=engine)
    keeper.ensure(session)
    prepare = [argv for argv in host.ran if argv[:2] == ("sh", "-c") and "umask 077" in argv[2]]
    assert prepare and prepare[0][-1] == "/home/deploy/.bgdeploy/unit/router/capture"
    assert ("run_keeper", "bgdeploy-unit-capture") in engine.calls


class DyingKeeper(FakeEngine):
    def run_keeper(
        self, name: str, image: str, command: list[str], mount: tuple[str, str], labels: dict[str, str]
    ) -> ContainerInfo:
        info = replace(super().run_keeper(name, image, command, mount, labels), status="exited")
        self.containers[name] = info
        return info


def test_a_keeper_that_cannot_run_stops_the_deploy() -> None:
    engine = DyingKeeper()
    with pytest.raises(DeployFailed, match="does not keep running"):
        keeper.ensure(fake_session(CAPTURE, engine=engine))
    assert "bgdeploy-unit-capture" not in engine.containers


def test_capture_off_removes_the_keeper_and_the_directory() -> None:
    host, engine = FakeHost(), FakeEngine()
    engine.containers["bgdeploy-unit-capture"] = replace(
        engine.run_keeper("bgdeploy-unit-capture", "img", [], ("/a", "/b"), {}),
        labels={f"{LABEL_PREFIX}role": "capture"},
    )
    session = fake_session(SPEC, host=host, engine=engine)
    keeper.ensure(session)  # capture off: nothing prepared before the config is written
    assert not any(argv[:1] == ("sh",) for argv in host.ran)
    keeper.retire_if_off(session)
    assert "bgdeploy-unit-capture" not in engine.containers
    assert ("rm", "-rf", "--", "/home/deploy/.bgdeploy/unit/router/capture") in host.ran
    keeper.retire_if_off(fake_session(CAPTURE, host=host, engine=engine))  # capture on: nothing removed
    assert host.ran.count(("rm", "-rf", "--", "/home/deploy/.bgdeploy/unit/router/capture")) == 1


def test_the_capture_directory_is_private_even_when_it_already_existed(tmp_path: Path) -> None:
    directory = tmp_path / "capture"
    directory.mkdir(mode=0o755)
    (directory / "capture.jsonl.1").write_text("{}\n")
    subprocess.run(["sh", "-c", keeper.PREPARE, "sh", str(directory)], check=True, timeout=30)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in directory.iterdir()} == {0o600}
