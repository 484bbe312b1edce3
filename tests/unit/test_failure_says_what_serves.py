"""A failed deploy says what the router actually serves: after a lost connection past the switch that is the
new colour (the undo could not route back), never "blue still serves"."""

from __future__ import annotations

import pytest

from bgdeploy.errors import ConnectionLost
from bgdeploy.execute import colours
from bgdeploy.execute import deploy as deploy_module
from bgdeploy.plan.container import spec_release
from bgdeploy.plan.names import Colour
from bgdeploy.report.markdown import headline
from tests.fakes import FakeEngine, container
from tests.unit.test_cycle_undo import BLUE, GREEN, cycle_on


def _failed_after(routed: dict[Colour, int], *, undo_fails: bool, monkeypatch: pytest.MonkeyPatch) -> str:
    def apply_weights(session: object, weights: dict[str, int], ports: object = None, *, confirm: object) -> None:
        if undo_fails:
            raise ConnectionLost("the SSH connection to the host was lost: Socket is closed")

    monkeypatch.setattr(deploy_module, "apply_weights", apply_weights)
    monkeypatch.setattr(colours, "drain", lambda s, c: None)
    engine = FakeEngine(container(BLUE), container(GREEN))
    cycle = cycle_on(engine, old="blue", started=True, switched=True)
    cycle.routed = dict(routed)
    session = cycle.session
    session.set_target(spec_release(session.loaded.spec, "green", session.loaded.spec_hash, "t1"))
    result = session.result
    result.failure = "smoke: the connection dropped"
    result.outcome = "failed"
    deploy_module._undo_after_failure(cycle, ConnectionLost("Socket is closed"))
    return headline(result, markdown=False)


def test_a_lost_connection_past_the_switch_says_green_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _failed_after({"green": 100}, undo_fails=True, monkeypatch=monkeypatch)
    assert "blue still serves" not in text
    assert "green serves" in text
    assert "still sends traffic to the new release on green (green 100%)" in text


def test_an_undo_that_routed_back_says_blue_still_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _failed_after({"green": 100}, undo_fails=False, monkeypatch=monkeypatch)
    assert "blue still serves" in text and "new release" not in text


def test_a_canary_step_cut_off_names_both_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _failed_after({"blue": 90, "green": 10}, undo_fails=True, monkeypatch=monkeypatch)
    assert "blue still serves" in text
    assert "(blue 90%, green 10%)" in text
