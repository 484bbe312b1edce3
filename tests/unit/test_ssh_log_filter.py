"""A refused port forward while a model loads is expected: paramiko's ERROR line for it never reaches the user."""

from __future__ import annotations

import logging

import pytest

import bgdeploy.transports.ssh  # noqa: F401  (installs the filter)


def test_refused_forward_is_not_printed_but_other_paramiko_errors_are(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("paramiko.transport")
    with caplog.at_level(logging.ERROR, logger="paramiko.transport"):
        logger.error("Secsh channel 3 open FAILED: Connection refused: Connect failed")
        logger.error("Socket exception: Connection reset by peer (104)")
    assert [r.getMessage() for r in caplog.records] == ["Socket exception: Connection reset by peer (104)"]
