"""The router's open connections to a colour, from /proc/net text captured on Linux: only the router counts."""

from __future__ import annotations

from bgdeploy.plan.sockets import (
    default_gateways,
    nginx_worker_uids,
    parse_tcp,
    router_connections_in_container,
    router_connections_on_host,
)

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def line(n: int, local: str, remote: str, state: str, uid: int = 0) -> str:
    timers = "00000000:00000000 00:00000000 00000000"
    return f"   {n}: {local} {remote} {state} {timers} {uid:>5}        0 {n} 1 0 100 0 0 10 0\n"


# Inside the colour's container (172.18.0.3, server on 8000 = 1F40): the router is 172.18.0.2, the gateway 172.18.0.1.
CONTAINER_TCP = (
    HEADER
    + line(0, "00000000:1F40", "00000000:0000", "0A")  # the listening socket
    + line(1, "030012AC:1F40", "020012AC:A1B2", "01")  # the router, a request in flight
    + line(2, "030012AC:1F40", "020012AC:A1B3", "01")  # the router, a stream
    + line(3, "030012AC:1F40", "010012AC:C000", "01")  # a scraper through the published port (the gateway)
    + line(4, "030012AC:1F40", "020012AC:A1B4", "06")  # TIME_WAIT: finished
    + line(5, "0100007F:1F40", "0100007F:D000", "01")  # something inside the container itself
    + line(6, "030012AC:9C40", "020012AC:A1B5", "01")  # another port
)
ROUTE = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    "eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
)


def test_addresses_and_ports_are_decoded() -> None:
    sockets = parse_tcp(CONTAINER_TCP)
    assert len(sockets) == 7
    assert (sockets[1].local, sockets[1].local_port, sockets[1].remote, sockets[1].state) == (
        "172.18.0.3",
        8000,
        "172.18.0.2",
        "01",
    )
    assert default_gateways(ROUTE) == {"172.18.0.1"}


def test_in_a_container_only_the_routers_connections_count() -> None:
    assert router_connections_in_container(CONTAINER_TCP, ROUTE, 8000) == 2
    assert router_connections_in_container(HEADER + line(0, "00000000:1F40", "00000000:0000", "0A"), ROUTE, 8000) == 0


def test_ipv6_and_v4_mapped_addresses() -> None:
    v4_mapped = "0000000000000000FFFF0000020012AC"  # ::ffff:172.18.0.2
    loopback6 = "00000000000000000000000001000000"  # ::1
    text = HEADER + line(0, "0000000000000000FFFF0000030012AC:1F40", f"{v4_mapped}:A1B2", "01")
    text += line(1, f"{loopback6}:1F40", f"{loopback6}:A1B3", "01")
    assert [s.remote for s in parse_tcp(text)] == ["172.18.0.2", "::1"]
    assert router_connections_in_container(text, ROUTE, 8000) == 1


def test_on_the_host_only_nginx_workers_connections_to_the_published_port_count() -> None:
    ps = "    0 nginx: master process /usr/sbin/nginx\n   33 nginx: worker process\n   33 nginx: worker process\n"
    ps += "  998 /usr/bin/prometheus --config.file=/etc/prometheus.yml\n"
    uids = nginx_worker_uids(ps)
    assert uids == {33}
    published = 0x8000  # 32768
    text = HEADER
    text += line(0, "0100007F:D001", "0100007F:8000", "01", uid=33)  # nginx worker -> the colour, in flight
    text += line(1, "0100007F:D002", "0100007F:8000", "01", uid=998)  # prometheus' keep-alive scrape
    text += line(2, "0100007F:8000", "0100007F:D001", "01", uid=0)  # docker-proxy's side of the first
    text += line(3, "0100007F:D003", "0100007F:8001", "01", uid=33)  # nginx to the other colour
    text += line(4, "0100007F:D004", "0100007F:8000", "06", uid=33)  # finished
    assert router_connections_on_host(text, published, uids) == 1


def test_garbage_is_no_socket() -> None:
    assert parse_tcp("cat: /proc/net/tcp6: No such file or directory\n" + HEADER) == []
