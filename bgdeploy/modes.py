"""The modes a run can have: the one list the CLI, the GitHub Action and their help texts share. Pure.

`auto` and `validate`/`offline-plan` never touch the host; the `HostMode`s connect to it and each has one
entry in `execute.commands.COMMANDS`; the `DEPLOYING` ones change what serves.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

HostMode = Literal["plan", "preview", "deploy", "rollback", "promote", "promote-full", "abort", "remove"]
Mode = Literal["auto", "validate", "offline-plan", HostMode]

MODES: tuple[Mode, ...] = ("auto", "validate", "offline-plan", *get_args(HostMode))
ON_HOST: tuple[HostMode, ...] = get_args(HostMode)
# Modes that change what serves: they get a GitHub deployment and report on the merged pull request.
DEPLOYING: tuple[HostMode, ...] = ("deploy", "rollback", "promote", "promote-full", "abort")


def is_mode(value: str) -> TypeGuard[Mode]:
    return value in MODES


def is_host_mode(value: str) -> TypeGuard[HostMode]:
    return value in ON_HOST


def modes_help() -> str:
    """`auto|validate|…|remove`, for help texts."""
    return "|".join(MODES)
