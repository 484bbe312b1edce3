"""The routing invariant's pure judgements (plan/routing.py) and the router kinds' command lines."""

from __future__ import annotations

from bgdeploy.plan.names import Colour
from bgdeploy.plan.nginx import Backend, RouterConfig, managed_config_id, render_full_conf, render_http_block
from bgdeploy.plan.routing import (
    ColourFacts,
    ProbeTally,
    RouterFacts,
    choose_host_port,
    judge_router,
    listening_ports,
    repair_weights,
    upstream_addresses,
)
from bgdeploy.routers import container, host
from bgdeploy.transports.docker_engine import ContainerInfo

UP = ColourFacts(running=True, healthy=True, address="127.0.0.1:20001")
UP_GREEN = ColourFacts(running=True, healthy=True, address="127.0.0.1:20002")
DOWN = ColourFacts(running=False, healthy=False, address=None)
SICK = ColourFacts(running=True, healthy=False, address="127.0.0.1:20002")


def facts(weights: dict[Colour, int] | None, *, loaded: str | None = "aaaaaaaaaaaa", **extra: object) -> RouterFacts:
    base: dict[str, object] = {
        "file_weights": weights,
        "file_id": "aaaaaaaaaaaa",
        "file_addresses": {"blue": "127.0.0.1:20001", "green": "127.0.0.1:20002"},
        "answered": True,
        "loaded_id": loaded,
        "deployment": "chat",
    }
    base.update(extra)
    return RouterFacts(**base)  # type: ignore[arg-type]


def test_a_router_serving_what_it_wrote_to_running_healthy_colours_is_fine() -> None:
    judgement = judge_router("chat", facts({"blue": 100}), {"blue": UP, "green": DOWN}, live="blue", previous=None)
    assert judgement.ok and judgement.repair is None


def test_a_router_pointing_at_a_stopped_colour_is_repaired_to_the_one_that_runs() -> None:
    judgement = judge_router("chat", facts({"green": 100}), {"blue": UP, "green": DOWN}, live="green", previous="blue")
    assert not judgement.ok
    assert "green, whose container is not running" in judgement.problems[0]
    assert judgement.repair == {"blue": 100}


def test_an_unhealthy_canary_colour_loses_its_share_to_the_healthy_one() -> None:
    judgement = judge_router(
        "chat", facts({"blue": 90, "green": 10}), {"blue": UP, "green": SICK}, live="blue", previous=None
    )
    assert judgement.repair == {"blue": 100}


def test_a_config_written_but_never_loaded_is_loaded() -> None:
    judgement = judge_router(
        "chat",
        facts({"green": 100}, loaded="bbbbbbbbbbbb"),
        {"blue": UP, "green": UP_GREEN},
        live="blue",
        previous=None,
    )
    assert any("interrupted between writing the config and reloading" in p for p in judgement.problems)
    assert judgement.repair == {"green": 100}


def test_a_colour_that_moved_to_another_port_is_re_rendered() -> None:
    moved = ColourFacts(running=True, healthy=True, address="127.0.0.1:29999")
    judgement = judge_router("chat", facts({"blue": 100}), {"blue": moved, "green": DOWN}, live="blue", previous=None)
    assert "it listens at 127.0.0.1:29999" in judgement.problems[0]
    assert judgement.repair == {"blue": 100}


def test_a_router_that_does_not_answer_is_repaired() -> None:
    judgement = judge_router(
        "chat",
        facts({"blue": 100}, answered=False, loaded=None),
        {"blue": UP, "green": DOWN},
        live="blue",
        previous=None,
    )
    assert judgement.problems == ("the router does not answer on its listener",)
    assert judgement.repair == {"blue": 100}


def test_another_deployment_on_the_port_is_a_conflict_no_re_render_fixes() -> None:
    judgement = judge_router(
        "chat", facts({"blue": 100}, deployment="other"), {"blue": UP, "green": DOWN}, live="blue", previous=None
    )
    assert judgement.conflict and judgement.repair is None
    assert "two deployments claim one port" in judgement.problems[-1]


def test_nothing_alive_is_stranded_and_never_repaired_to_a_dead_colour() -> None:
    judgement = judge_router("chat", facts({"blue": 100}), {"blue": DOWN, "green": DOWN}, live="blue", previous=None)
    assert judgement.stranded and judgement.repair is None


def test_no_config_while_state_names_a_live_colour_routes_to_it() -> None:
    judgement = judge_router(
        "chat", facts(None, answered=False), {"blue": UP, "green": DOWN}, live="blue", previous=None
    )
    assert judgement.repair == {"blue": 100}
    empty = judge_router("chat", facts(None, answered=False), {"blue": DOWN, "green": DOWN}, live=None, previous=None)
    assert empty.ok


def test_an_out_of_date_config_is_re_rendered() -> None:
    judgement = judge_router(
        "chat",
        facts({"blue": 100}),
        {"blue": UP, "green": DOWN},
        live="blue",
        previous=None,
        render_id=lambda weights: "cccccccccccc",
    )
    assert judgement.repair == {"blue": 100}
    same = judge_router(
        "chat",
        facts({"blue": 100}),
        {"blue": UP, "green": DOWN},
        live="blue",
        previous=None,
        render_id=lambda weights: "aaaaaaaaaaaa",
    )
    assert same.ok


def test_repair_prefers_the_live_release_then_the_previous() -> None:
    both = {"blue": UP, "green": UP_GREEN}
    assert repair_weights({}, both, ("green", "blue")) == {"green": 100}
    assert repair_weights({}, {"blue": UP, "green": DOWN}, ("green", "blue")) == {"blue": 100}
    assert repair_weights({"blue": 50, "green": 50}, both, (None,)) == {"blue": 50, "green": 50}


def test_the_config_id_is_in_the_header_and_in_every_answer() -> None:
    cfg = RouterConfig("chat", 8080, "127.0.0.1", 60, (Backend("blue", "127.0.0.1:20001", 100),), "/var/log/a.log")
    text = render_http_block(cfg)
    config_id = managed_config_id(text)
    assert config_id is not None and len(config_id) == 12
    assert text.count(f"add_header X-Bgdeploy-Config {config_id} always;") == 3  # /v1/, health, 404
    assert managed_config_id(render_full_conf(cfg)) == config_id
    moved = RouterConfig("chat", 8080, "127.0.0.1", 60, (Backend("blue", "127.0.0.1:20009", 100),), "/var/log/a.log")
    assert managed_config_id(render_http_block(moved)) != config_id
    assert upstream_addresses(text) == {"blue": "127.0.0.1:20001"}


def test_probe_tally_reads_one_loaded_config_and_spots_another_deployment() -> None:
    tally = ProbeTally()
    tally.add({"x-bgdeploy-config": "aaaaaaaaaaaa", "x-bgdeploy-deployment": "chat", "x-bgdeploy-colour": "blue"})
    tally.add({"x-bgdeploy-config": "aaaaaaaaaaaa", "x-bgdeploy-deployment": "chat", "x-bgdeploy-colour": "green"})
    assert tally.loaded_id() == "aaaaaaaaaaaa" and tally.deployment("chat") == "chat"
    tally.add({"x-bgdeploy-config": "bbbbbbbbbbbb", "x-bgdeploy-deployment": "other"})
    assert tally.loaded_id() is None and tally.deployment("chat") == "other"


def test_host_ports_are_stable_per_colour_and_skip_busy_ones() -> None:
    port = choose_host_port("chat", "blue", set())
    assert port == choose_host_port("chat", "blue", set())
    assert 20000 <= port <= 39999
    assert choose_host_port("chat", "blue", {port}) != port
    ss = "LISTEN 0 511 127.0.0.1:8080 0.0.0.0:*\nLISTEN 0 4096 [::]:22 [::]:*\n"
    assert listening_ports(ss) == {8080, 22}


def test_nginx_command_lines_per_router_kind() -> None:
    assert container.nginx_argv(["-s", "reload"]) == ["nginx", "-s", "reload", "-c", "/etc/bgdeploy/nginx.conf"]
    assert host.nginx_argv(["-t"], sudo=True) == ["sudo", "-n", "nginx", "-t"]
    assert host.nginx_argv(["-s", "reopen"], sudo=False) == ["nginx", "-s", "reopen"]


def test_a_router_container_started_with_other_settings_is_seen_as_changed() -> None:
    wanted = container.router_labels("chat", "nginx:1.27", 8080, "127.0.0.1")
    running = ContainerInfo(
        "r", "id", "running", 0, 0, container.router_labels("chat", "nginx:1.25", 8080, "127.0.0.1"), None, False
    )
    assert container.settings_changed(running, wanted) == ["image nginx:1.25 → nginx:1.27"]
    older = ContainerInfo("r", "id", "running", 0, 0, {"dev.bgdeploy.name": "chat"}, None, False)
    assert container.settings_changed(older, wanted) == []


def test_a_router_running_with_old_settings_is_replaced_with_the_same_weights() -> None:
    judgement = judge_router(
        "chat", facts({"blue": 100}, current=False), {"blue": UP, "green": DOWN}, live="blue", previous=None
    )
    assert "spec's settings" in judgement.problems[0]
    assert judgement.repair == {"blue": 100}
