"""Open TCP connections, read from Linux's /proc/net/tcp, tcp6 and route: how many requests the router still
has open to a colour, for servers that publish no vLLM metrics (the drain waits for them). Pure parsing.

Who counts as the router: in container mode, the peers of the colour's server port on the deployment's
Docker network other than the network's gateway (a scraper or a probe on the host reaches the container
from the gateway); in host mode, the host's connections to the colour's published port that belong to an
nginx worker's user. After a reload, old nginx workers close their idle keepalive connections and keep only
those with a request in flight, so the count falls to 0 when the last answer (a stream too) is done.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass

ESTABLISHED = "01"
_TCP_LINE = re.compile(
    r"^\s*\d+:\s+(?P<local>[0-9A-Fa-f]+):(?P<lport>[0-9A-Fa-f]{4})\s+(?P<remote>[0-9A-Fa-f]+):(?P<rport>[0-9A-Fa-f]{4})"
    r"\s+(?P<state>[0-9A-Fa-f]{2})\s+\S+\s+\S+\s+\S+\s+(?P<uid>\d+)\s"
)


@dataclass(frozen=True)
class Socket:
    local: str
    local_port: int
    remote: str
    remote_port: int
    state: str
    uid: int


def _address(hex_text: str) -> str:
    """An address as /proc writes it: IPv4 as one little-endian word, IPv6 as four."""
    raw = bytes.fromhex(hex_text)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def parse_tcp(text: str) -> list[Socket]:
    """Every socket line of /proc/net/tcp and tcp6 (concatenated is fine); other lines are skipped."""
    sockets: list[Socket] = []
    for line in text.splitlines():
        match = _TCP_LINE.match(line)
        if match is None or len(match["local"]) not in (8, 32) or len(match["remote"]) not in (8, 32):
            continue
        sockets.append(
            Socket(
                local=_address(match["local"]),
                local_port=int(match["lport"], 16),
                remote=_address(match["remote"]),
                remote_port=int(match["rport"], 16),
                state=match["state"].upper(),
                uid=int(match["uid"]),
            )
        )
    return sockets


def default_gateways(route_text: str) -> set[str]:
    """The gateways of /proc/net/route's default routes (a container's gateway is its network's host side)."""
    gateways: set[str] = set()
    for line in route_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "00000000" and re.fullmatch(r"[0-9A-Fa-f]{8}", fields[2]):
            gateways.add(_address(fields[2]))
    return gateways


def router_connections_in_container(tcp_text: str, route_text: str, port: int) -> int:
    """Connections to the server's `port` from other containers on its network (the router's), not from the
    gateway (the host: scrapers, probes, published-port traffic) nor from inside the container."""
    excluded = default_gateways(route_text)
    return sum(
        1
        for s in parse_tcp(tcp_text)
        if s.state == ESTABLISHED
        and s.local_port == port
        and s.remote not in excluded
        and not ipaddress.ip_address(s.remote).is_loopback
    )


def nginx_worker_uids(ps_text: str) -> set[int]:
    """The users nginx's workers run as, from `ps -eo uid=,args=`."""
    uids: set[int] = set()
    for line in ps_text.splitlines():
        uid, _, args = line.strip().partition(" ")
        if uid.isdigit() and args.strip().startswith("nginx: worker process"):
            uids.add(int(uid))
    return uids


def router_connections_on_host(tcp_text: str, published_port: int, uids: Collection[int]) -> int:
    """The host's connections to a colour's published port on loopback that belong to an nginx worker."""
    return sum(
        1
        for s in parse_tcp(tcp_text)
        if s.state == ESTABLISHED
        and s.remote_port == published_port
        and ipaddress.ip_address(s.remote).is_loopback
        and s.uid in uids
    )
