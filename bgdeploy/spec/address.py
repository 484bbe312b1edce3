"""`[USER@]HOST[:PORT]` as typed on a command line (`bgdeploy list --host`), parsed. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bgdeploy.errors import UsageError

_ADDRESS = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<ipv6>[0-9a-fA-F:.]+)\]|(?P<host>[^@\s:\[\]]+))(?::(?P<port>\d+))?$"
)


@dataclass(frozen=True)
class Address:
    host: str
    user: str | None = None
    port: int = 22


def parse_address(text: str) -> Address:
    match = _ADDRESS.match(text.strip())
    port = int(match.group("port")) if match and match.group("port") else 22
    if match is None or not 1 <= port <= 65535:
        raise UsageError(
            f"{text!r} is not a host address: give [USER@]HOST[:PORT], e.g. deploy@gpu-1.example.com:22 "
            "(an IPv6 address in brackets: [2001:db8::1]:22)"
        )
    return Address(host=match.group("ipv6") or match.group("host"), user=match.group("user"), port=port)
