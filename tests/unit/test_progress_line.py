"""The live progress line: one line rewritten in place on a terminal; plain lines in CI, pipes and TERM=dumb."""

from __future__ import annotations

import io

import pytest

from bgdeploy.execute.session import Output


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def not_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CI", "GITHUB_ACTIONS", "TERM"):
        monkeypatch.delenv(name, raising=False)


def test_on_a_terminal_the_line_is_rewritten_then_cleared_before_the_next_message() -> None:
    screen = Terminal()
    out = Output(stream=screen)
    assert out.progress("wait-ready: blue loading, 10s elapsed, 9m50s left of health.ready_timeout")
    assert out.progress("wait-ready: blue loading, 11s elapsed, 9m49s left")
    out.say("wait-ready: blue is ready")
    text = screen.getvalue()
    assert text.count("\r") >= 3 and "\n" not in text.split("wait-ready: blue is ready")[0]
    assert text.rstrip().endswith("wait-ready: blue is ready")
    assert "\x1b" not in text  # no colour or escape codes at all (NO_COLOR has nothing to turn off)


@pytest.mark.parametrize("env", [{"CI": "true"}, {"GITHUB_ACTIONS": "true"}, {"TERM": "dumb"}, None])
def test_plain_lines_in_ci_in_a_pipe_and_on_a_dumb_terminal(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str] | None
) -> None:
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    stream = Terminal() if env else io.StringIO()  # None: a pipe
    out = Output(stream=stream)
    assert out.progress("loading") is False
    assert stream.getvalue() == ""


def test_a_progress_line_masks_secrets() -> None:
    screen = Terminal()
    out = Output(stream=screen, secrets=("hf_s3cr3t_value",))
    out.progress("token hf_s3cr3t_value loading")
    assert "hf_s3cr3t_value" not in screen.getvalue()
