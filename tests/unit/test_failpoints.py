"""Failpoints (the fault matrix's injection points) are inert unless configured, and do what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgdeploy.errors import TransportError
from bgdeploy.execute import failpoints


def test_nothing_happens_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(failpoints.ENV, raising=False)
    failpoints.hit("before:switch")
    failpoints.hit("router:reload")


def test_fail_raises_a_transport_error_only_at_its_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(failpoints.ENV, "before:record=fail, router:reload=fail")
    failpoints.hit("before:switch")
    with pytest.raises(TransportError, match="No space left on device"):
        failpoints.hit("before:record")
    with pytest.raises(TransportError):
        failpoints.hit("router:reload")


def test_drop_closes_the_transport_underneath_and_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []

    class Transport:
        def close(self) -> None:
            closed.append(True)

    class Client:
        def get_transport(self) -> Transport:
            return Transport()

    class Host:
        _client = Client()

    monkeypatch.setenv(failpoints.ENV, "before:bake=drop")
    with pytest.raises(TransportError, match="dropped"):
        failpoints.hit("before:bake", Host())
    assert closed == [True]


def test_pause_signals_and_goes_on_when_told(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(failpoints.ENV, "before:smoke=pause")
    monkeypatch.setenv("BGDEPLOY_FAILPOINT_DIR", str(tmp_path))
    (tmp_path / "before-smoke.go").write_text("go")  # already allowed: returns at once
    failpoints.hit("before:smoke")
    assert (tmp_path / "before-smoke.reached").exists()


def test_a_command_phase_is_entered_at_its_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes import fake_session

    session = fake_session()
    monkeypatch.setenv(failpoints.ENV, "before:rollback:switch=fail")
    with failpoints.phase(session, "rollback", "drain"):
        pass
    with pytest.raises(TransportError), failpoints.phase(session, "rollback", "switch"):
        raise AssertionError("the phase must not start: its boundary failed first")
    assert [p.name for p in session.result.phases] == ["drain"]


def test_the_boundary_list_names_each_command_s_phases() -> None:
    from bgdeploy.plan.boundaries import all_boundaries, point

    rows = all_boundaries()
    assert "switch" in rows and "rollback:switch" in rows and "promote:resume" in rows
    assert "abort:undo" in rows and "canary:weights" in rows
    assert point("deploy", "switch") == "before:switch" and point("abort", "undo") == "before:abort:undo"
