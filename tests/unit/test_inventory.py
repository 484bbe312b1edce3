"""`bgdeploy list`'s inventory (pure), `remove`'s summary, host addresses, and the network-pool error."""

from __future__ import annotations

from typing import Any

import pytest
from docker.errors import APIError

from bgdeploy.errors import TransportError, UsageError
from bgdeploy.lifecycle.inventory import SeenContainer, SeenState, build, include_port, render
from bgdeploy.lifecycle.remove import Removal
from bgdeploy.plan.state import HostState, Release
from bgdeploy.spec.address import Address, parse_address
from bgdeploy.transports.docker_engine import DockerEngine

P = "dev.bgdeploy."


def colour(name: str, c: str, status: str = "running", model: str = "m1", port: int = 40001) -> SeenContainer:
    labels = {f"{P}name": name, f"{P}colour": c, f"{P}model": model, f"{P}image": "img:1"}
    labels |= {f"{P}gpus": "0", f"{P}gpu-memory-utilization": "0.45"}
    return SeenContainer(f"bgdeploy-{name}-{c}", status, labels, port)


def router(name: str, port: int) -> SeenContainer:
    return SeenContainer(f"bgdeploy-{name}-router", "running", {f"{P}name": name, f"{P}role": "router"}, port)


def state(name: str, live: str | None = "blue") -> SeenState:
    release = Release(live, "m1", "img:1", "h", "2026-01-01T00:00:00Z") if live else None  # type: ignore[arg-type]
    entry = {"at": "2026-01-01T00:00:00Z", "command": "deploy", "outcome": "deployed"}
    return SeenState(HostState(name=name, live=release), True, entry)


def test_a_whole_deployment_has_every_column_and_no_leftover() -> None:
    rows = build(
        [colour("chat", "blue"), colour("chat", "green", "exited", "m0"), router("chat", 8080)],
        ["bgdeploy-chat"],
        {"chat": state("chat")},
        {},
        {"bgdeploy-chat-blue": "healthy"},
    )
    (row,) = rows
    assert (row.name, row.live, row.model, row.image, row.gpus, row.memory) == (
        "chat",
        "blue",
        "m1",
        "img:1",
        "0",
        "0.45",
    )
    assert (row.router, row.router_port, row.health) == ("container", 8080, "healthy")
    assert row.last_deploy == "2026-01-01T00:00:00Z deploy deployed"
    assert row.leftovers == []
    assert "chat  blue  m1" in render(rows, "deploy@gpu")


def test_leftovers_are_flagged_with_the_command_that_cleans_them() -> None:
    rows = {
        r.name: r
        for r in build(
            [colour("orphan", "blue")],
            ["bgdeploy-netonly", "bgdeploy-orphan", "bridge-other"],
            {"stateonly": state("stateonly"), "kept": state("kept", live=None)},
            {"hostonly": 9000},
            {},
        )
    }
    assert set(rows) == {"orphan", "netonly", "stateonly", "kept", "hostonly"}
    assert rows["orphan"].live == "blue"  # no state: the one running colour
    assert any("containers with no state" in item for item in rows["orphan"].leftovers)
    assert any("network bgdeploy-netonly with no state and no container" in i for i in rows["netonly"].leftovers)
    assert any("state says blue is live but no container" in i for i in rows["stateonly"].leftovers)
    assert any("state directory with no container" in i for i in rows["kept"].leftovers)
    assert any("host nginx include" in i for i in rows["hostonly"].leftovers)
    for row in rows.values():
        assert all(f"bgdeploy remove --name {row.name}" in item for item in row.leftovers), row
    text = render(list(rows.values()), "h")
    assert "leftover: netonly:" in text


def test_a_stopped_live_colour_shows_in_health() -> None:
    (row,) = build([colour("c", "blue", "exited")], [], {"c": state("c")}, {}, {})
    assert row.health == "blue exited"


def test_include_port_reads_the_first_listen() -> None:
    assert include_port("# managed\nserver {\n  listen 127.0.0.1:8081;\n") == 8081
    assert include_port("server {\n    listen 8082 default_server;\n") == 8082
    assert include_port("server {}\n") is None


def test_removal_summary_and_emptiness() -> None:
    assert Removal("x").empty
    assert Removal("x", state_dir="/s", keep_state=True).empty  # nothing live recorded: nothing to do
    assert not Removal("x", state_dir="/s", keep_state=True, state_live=True).empty
    full = Removal(
        "x", (("bgdeploy-x-router", "running"),), "/etc/nginx/conf.d/bgdeploy-x.conf", "bgdeploy-x", True, "/s"
    )
    lines = full.lines()
    assert lines[0] == "container bgdeploy-x-router (running)"
    assert any("nginx -t" in line for line in lines) and "network bgdeploy-x" in lines
    assert lines[-1] == "state directory /s (state and history)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu-1", Address("gpu-1")),
        ("deploy@gpu-1:2222", Address("gpu-1", "deploy", 2222)),
        ("[2001:db8::1]:22", Address("2001:db8::1", None, 22)),
    ],
)
def test_addresses(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "a@", "h:0", "h:70000", "a b", "2001:db8::1"])
def test_bad_addresses_say_the_form(text: str) -> None:
    with pytest.raises(UsageError, match=r"\[USER@\]HOST\[:PORT\]"):
        parse_address(text)


class _Networks:
    def list(self, names: Any = None) -> list[Any]:
        return []

    def create(self, name: str, **kwargs: Any) -> None:
        raise APIError(
            "500", explanation="could not find an available, non-overlapping IPv4 address pool among the defaults"
        )


class _Client:
    networks = _Networks()


def test_network_pool_exhaustion_names_the_cause_and_the_fix() -> None:
    with pytest.raises(TransportError) as caught:
        DockerEngine(_Client()).ensure_network("bgdeploy-chat")  # type: ignore[arg-type]
    message = str(caught.value)
    assert "no free address pool" in message and "bgdeploy remove" in message
    assert "default-address-pools" in message and "non-overlapping" in message


def test_the_headline_of_a_removal() -> None:
    from bgdeploy.plan.result import Result
    from bgdeploy.report.markdown import headline

    assert headline(Result("remove", "chat", "removed"), markdown=False).endswith(
        "Removed: chat is gone from the host (router, colours, network, logs)"
    )
    assert "nothing of chat was on the host" in headline(Result("remove", "chat", "unchanged"), markdown=False)
    failed = headline(Result("remove", "chat", "failed", failure="nginx -t refused"), markdown=False)
    assert "Remove failed" in failed and "nginx -t refused" in failed and "nothing was live" not in failed


def test_history_merges_removals_in_time_order_and_renders_them() -> None:
    from bgdeploy.lifecycle.history import merge, render

    own = [
        {"at": "2026-01-01T00:00:00Z", "command": "deploy", "outcome": "deployed", "to": {"colour": "blue"}},
        {"at": "2026-01-03T00:00:00Z", "command": "deploy", "outcome": "failed", "failure": "validation"},
    ]
    host = [
        {"at": "2026-01-02T00:00:00Z", "command": "remove", "name": "chat", "outcome": "started"},
        {"at": "2026-01-02T00:00:00Z", "command": "remove", "name": "chat", "outcome": "removed", "duration_s": 5400},
        {"at": "2026-01-02T00:00:01Z", "command": "remove", "name": "other", "outcome": "removed"},
    ]
    merged = merge(own, host, "chat", 10)
    assert [(e["command"], e["outcome"]) for e in merged] == [
        ("deploy", "deployed"),
        ("remove", "removed"),
        ("deploy", "failed"),
    ]
    assert merge(own, host, "chat", 1) == [own[1]]
    text = render(merged, "chat", "gpu-1")
    assert "3 entries" in text and "1h30m" in text and "    failure: validation" in text
    assert render([], "chat", "gpu-1") == "chat on gpu-1: no history"


def keeper(name: str, status: str = "running") -> SeenContainer:
    labels = {f"{P}name": name, f"{P}role": "capture", f"{P}capture-max-bytes": "1048576"}
    return SeenContainer(f"bgdeploy-{name}-capture", status, labels)


def test_the_capture_keeper_is_known_and_shown_not_a_colour() -> None:
    assert keeper("chat").role == "capture"
    rows = build(
        [colour("chat", "blue"), router("chat", 8080), keeper("chat")],
        ["bgdeploy-chat"],
        {"chat": state("chat")},
        {},
        {"bgdeploy-chat-blue": "healthy"},
    )
    (row,) = rows
    assert (row.live, row.model, row.capture, row.leftovers) == ("blue", "m1", "running", [])
    assert "capture: chat: keeper bgdeploy-chat-capture running" in render(rows, "deploy@gpu")


def test_a_capture_keeper_alone_is_a_leftover() -> None:
    (row,) = build([keeper("old", "exited")], [], {}, {}, {})
    assert row.live is None and row.capture == "exited"
    assert any("capture keeper" in item and "bgdeploy remove --name old" in item for item in row.leftovers)


def test_remove_names_the_captured_requests() -> None:
    removal = Removal(name="chat", containers=(("bgdeploy-chat-capture", "running"),), router_dir=True)
    assert "container bgdeploy-chat-capture (running)" in removal.lines()
    assert "the router's config, access logs and captured requests" in removal.lines()
