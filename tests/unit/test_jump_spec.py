"""target.jump in the spec: its host key is checked like target.host_key, and it needs transport: ssh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bgdeploy.errors import SpecError
from bgdeploy.spec import load_spec

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfGRy7nL8mj9zCsOYvIaPeU/TV/uHS4zQUvQVaNO2Uf"


def spec(tmp_path: Path, target: dict[str, Any]) -> Path:
    data = {"version": 1, "name": "chat", "target": target, "model": {"name": "m"}, "runtime": {"image": "i:1"}}
    path = tmp_path / "bluegreen.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_jump_host_is_read(tmp_path: Path) -> None:
    target = {
        "host": "10.0.0.5",
        "host_key": KEY,
        "jump": {"host": "bastion.example.com", "user": "ops", "host_key": KEY},
    }
    jump = load_spec(str(spec(tmp_path, target))).spec.target.jump
    assert jump is not None and (jump.host, jump.port, jump.user) == ("bastion.example.com", 22, "ops")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"host": "h", "host_key": KEY, "jump": {"host": "b", "host_key": "ssh-ed25519 nope"}}, "jump.host_key"),
        ({"host": "h", "host_key": KEY, "jump": {"host": "b"}}, "host_key"),
        ({"transport": "local", "jump": {"host": "b", "host_key": KEY}}, "transport: local"),
    ],
)
def test_a_bad_jump_host_is_refused_with_its_path(tmp_path: Path, target: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(str(spec(tmp_path, target)))
    assert message in caught.value.render() and "target.jump" in caught.value.render()
