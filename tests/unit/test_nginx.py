"""Router config rendering: what nginx is told, and that Debian's nginx accepts the whole file."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from bgdeploy.plan.nginx import Backend, RouterConfig, parse_managed_header, render_full_conf, render_http_block

NGINX = "/usr/sbin/nginx"


def config(
    *backends: Backend, bind: str = "0.0.0.0", name: str = "chat-prod", read_timeout_s: float = 120
) -> RouterConfig:
    return RouterConfig(
        name=name,
        listen=8080,
        bind=bind,
        read_timeout_s=read_timeout_s,
        backends=backends,
        access_log="/var/log/bgdeploy/chat-prod.access.log",
    )


BLUE = Backend("blue", "bgdeploy-chat-prod-blue:8000", 100)
GREEN_OFF = Backend("green", "bgdeploy-chat-prod-green:8000", 0)
SPLIT = (Backend("blue", "127.0.0.1:8001", 90), Backend("green", "127.0.0.1:8002", 10))


def block(text: str, head: str) -> str:
    """The body of the first `head { ... }` block (no nested braces inside location blocks)."""
    start = text.index(head + " {") + len(head) + 2
    return text[start : text.index("}", start)]


def test_single_colour_renders_only_the_weighted_backend() -> None:
    text = render_http_block(config(BLUE, GREEN_OFF))
    assert "upstream bgdeploy_chat_prod_blue {" in text
    assert "server bgdeploy-chat-prod-blue:8000 max_fails=0;" in text
    # A stopped green's host name would not resolve and nginx would refuse the whole config.
    assert "green:8000" not in text
    assert "bgdeploy_chat_prod_green" not in text
    assert "split_clients" not in text
    assert re.search(r"map \$request_id \$bgdeploy_chat_prod_colour \{\s*default blue;\s*\}", text)
    assert "proxy_pass http://bgdeploy_chat_prod_$bgdeploy_chat_prod_colour;" in text
    assert "listen 0.0.0.0:8080;" in text


def test_streaming_directives_and_headers_in_the_api_location() -> None:
    api = block(render_http_block(config(BLUE)), "location /v1/")
    for directive in (
        "proxy_buffering off;",
        "proxy_request_buffering off;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header X-Request-Id $request_id;",
        "proxy_read_timeout 120s;",
        "proxy_send_timeout 120s;",
        "proxy_connect_timeout 5s;",
        "proxy_next_upstream error timeout;",
        "add_header X-Bgdeploy-Colour $bgdeploy_chat_prod_colour always;",
        "add_header X-Bgdeploy-Deployment chat-prod always;",
    ):
        assert directive in api, directive


def test_health_location_is_proxied_with_short_timeouts_and_the_rest_is_404_json() -> None:
    text = render_http_block(config(BLUE))
    health = block(text, "location = /health")
    assert "proxy_pass http://bgdeploy_chat_prod_$bgdeploy_chat_prod_colour;" in health
    assert "proxy_read_timeout 10s;" in health
    assert "add_header X-Bgdeploy-Colour $bgdeploy_chat_prod_colour always;" in health
    rest = block(text, "location /")
    assert "return 404 '{" in rest
    assert "default_type application/json;" in rest
    assert "proxy_pass" not in rest


def test_ten_ninety_split_gives_the_canary_its_exact_share() -> None:
    text = render_http_block(config(*SPLIT))
    split = block(text, 'split_clients "${request_id}" $bgdeploy_chat_prod_colour')
    assert re.findall(r"^\s*(\S+) (\w+);$", split, re.MULTILINE) == [("10%", "green"), ("*", "blue")]
    assert "upstream bgdeploy_chat_prod_blue {" in text
    assert "upstream bgdeploy_chat_prod_green {" in text
    assert text.count("keepalive 32;") == 2


def test_fractional_read_timeout_is_rendered_in_milliseconds() -> None:
    assert "proxy_read_timeout 1500ms;" in render_http_block(config(BLUE, read_timeout_s=1.5))


def test_ipv6_bind_is_bracketed() -> None:
    assert "listen [::1]:8080;" in render_http_block(config(BLUE, bind="::1"))
    assert "listen [::]:8080;" in render_http_block(config(BLUE, bind="[::]"))


def test_access_log_is_one_json_object_per_line() -> None:
    text = render_http_block(config(BLUE))
    assert "log_format bgdeploy_chat_prod escape=json" in text
    assert "access_log /var/log/bgdeploy/chat-prod.access.log bgdeploy_chat_prod;" in text
    for key in ("ts", "colour", "status", "request_time", "upstream_response_time", "upstream_addr", "method"):
        assert f'"{key}":' in text
    for key in ("uri", "request_id", "bytes"):
        assert f'"{key}":' in text


@pytest.mark.parametrize(
    ("backends", "message"),
    [
        ((), "at least one backend"),
        ((GREEN_OFF,), "at least one backend"),
        ((Backend("blue", "127.0.0.1:8001", 60), Backend("green", "127.0.0.1:8002", 30)), "add up to 100, got 90"),
        ((Backend("blue", "127.0.0.1:8001", 90),), "add up to 100, got 90"),
        ((BLUE, Backend("blue", "127.0.0.1:8002", 0)), "given twice"),
        ((Backend("red", "127.0.0.1:8001", 100),), "not one of blue, green"),
        ((Backend("blue", "127.0.0.1:8001; evil", 100),), "not HOST:PORT"),
        ((Backend("blue", "127.0.0.1:8001", 101),), "not between 0 and 100"),
    ],
)
def test_invalid_backends_are_refused(backends: tuple[Backend, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_http_block(config(*backends))


def test_text_that_would_break_out_of_a_directive_is_refused() -> None:
    with pytest.raises(ValueError, match="bind"):
        render_http_block(config(BLUE, bind="0.0.0.0; include /etc/shadow"))
    with pytest.raises(ValueError, match="deployment name"):
        render_http_block(config(BLUE, name="Chat_Prod"))
    bad_health = RouterConfig("chat", 80, "0.0.0.0", 60, (BLUE,), "/tmp/a.log", health_path="/h'$x")
    with pytest.raises(ValueError, match="health path"):
        render_http_block(bad_health)


def test_managed_header_reads_back_live_colour_and_weights() -> None:
    text = render_http_block(config(Backend("blue", "127.0.0.1:8001", 90), Backend("green", "127.0.0.1:8002", 10)))
    assert text.startswith("# managed by bgdeploy for deployment chat-prod: do not edit; ")
    assert parse_managed_header(text) == {"deployment": "chat-prod", "live": "blue", "weights": "blue:90,green:10"}
    switched = render_full_conf(config(Backend("blue", "127.0.0.1:8001", 0), Backend("green", "127.0.0.1:8002", 100)))
    assert parse_managed_header(switched) == {"deployment": "chat-prod", "live": "green", "weights": "blue:0,green:100"}


def test_managed_header_absent_or_foreign() -> None:
    assert parse_managed_header("") is None
    assert parse_managed_header("server { listen 80; }\n") is None
    assert parse_managed_header("# someone else's file\nserver {}\n") is None
    assert parse_managed_header("# managed by bgdeploy for deployment chat: do not edit; live=blue\n") is None


def test_full_conf_is_portable_and_keeps_runtime_files_under_tmp() -> None:
    text = render_full_conf(config(BLUE))
    assert "pid /tmp/nginx-bgdeploy.pid;" in text
    assert "client_max_body_size 32m;" in text
    for directive in ("client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path"):
        assert re.search(rf"^\s*{directive} /tmp/", text, re.MULTILINE), directive
    assert not re.search(r"^\s*user\s", text, re.MULTILINE)
    assert "mime.types" not in text
    assert "include" not in text
    assert render_http_block(config(BLUE)) in "\n".join(line.removeprefix("    ") for line in text.splitlines()) + "\n"


def _nginx_or_skip() -> str:
    if os.path.exists(NGINX):
        return NGINX
    if os.environ.get("CI") == "true":
        pytest.fail(f"{NGINX} is missing; CI must install nginx (apt-get install nginx-light or nginx)")
    pytest.skip(f"{NGINX} is not installed")


@pytest.mark.parametrize(
    "backends",
    [(Backend("blue", "127.0.0.1:18001", 100), Backend("green", "no-such-host.invalid:8000", 0)), SPLIT],
    ids=["single", "split"],
)
def test_debian_nginx_accepts_the_full_conf(tmp_path: Path, backends: tuple[Backend, ...]) -> None:
    nginx = _nginx_or_skip()
    cfg = RouterConfig(
        name="chat-prod",
        listen=18080,
        bind="127.0.0.1",
        read_timeout_s=300,
        backends=backends,
        access_log=str(tmp_path / "access.log"),
    )
    conf = tmp_path / "nginx.conf"
    # nginx -t creates the pid file and temp directories: keep them in tmp_path, not in /tmp.
    conf.write_text(render_full_conf(cfg, runtime_dir=str(tmp_path)))
    result = subprocess.run(
        [nginx, "-t", "-q", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "nginx-bgdeploy-proxy").is_dir()
