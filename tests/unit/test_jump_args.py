"""--jump / --jump-host-key of `init` and `list --host`: parsed into target.jump, and written into init's spec."""

from __future__ import annotations

import pytest
import yaml

from bgdeploy.errors import UsageError
from bgdeploy.lifecycle.listing import jump_from_args
from bgdeploy.onboarding.starter import HostFacts, render
from bgdeploy.spec import parse_spec_text
from tests.unit.conftest import HOST_KEY


def test_jump_address_and_key_become_target_jump() -> None:
    jump = jump_from_args("ops@bastion.example.com:2222", HOST_KEY)
    assert jump is not None
    assert (jump.host, jump.port, jump.user, jump.host_key) == ("bastion.example.com", 2222, "ops", HOST_KEY)
    plain = jump_from_args("bastion", HOST_KEY)
    assert plain is not None and (plain.port, plain.user) == (22, None)
    assert jump_from_args(None, None) is None


@pytest.mark.parametrize(
    ("jump", "key", "says"),
    [("bastion", None, "--jump-host-key"), (None, HOST_KEY, "give --jump"), ("a@@b", HOST_KEY, "not a host address")],
)
def test_a_jump_without_its_key_or_a_key_without_a_jump_is_a_usage_error(
    jump: str | None, key: str | None, says: str
) -> None:
    with pytest.raises(UsageError, match=says):
        jump_from_args(jump, key)


def test_init_writes_the_jump_into_a_spec_that_validates() -> None:
    facts = HostFacts("10.0.0.7", 22, "deploy", HOST_KEY, "SHA256:x")
    jump = jump_from_args("ops@bastion.example.com:2222", HOST_KEY)
    text = render(facts, name="chat", model="m", gated=False, jump=jump)
    target = yaml.safe_load(text)["target"]
    assert target["jump"] == {"host": "bastion.example.com", "port": 2222, "user": "ops", "host_key": HOST_KEY}
    loaded = parse_spec_text(text, "bluegreen.yaml", environ={})
    assert loaded.spec.target.jump is not None and loaded.spec.target.jump.user == "ops"
    assert "jump" not in yaml.safe_load(render(facts, name="chat", model="m", gated=False))["target"]
