"""One list of modes: every host mode has exactly one entry in the command table, and the help says them all."""

from __future__ import annotations

import pytest

from bgdeploy.cli import build_parser
from bgdeploy.execute.commands import COMMANDS
from bgdeploy.modes import DEPLOYING, MODES, ON_HOST


def test_the_command_table_has_one_entry_per_host_mode() -> None:
    assert set(COMMANDS) == set(ON_HOST)
    assert set(DEPLOYING) <= set(ON_HOST) <= set(MODES)


def test_the_ci_help_names_every_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ci", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, even inside a word
    assert "|".join(MODES) in text
