"""Render the router's nginx configuration (an include file for a host's nginx, or a whole nginx.conf).

The router sends `/v1/` and the health path to the colour chosen per request (split_clients on the request id,
so a canary gets exact percentages), streams without buffering, and names the serving colour in a response
header so that a deploy can confirm through nginx which colour answers after a reload.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from dataclasses import dataclass

from bgdeploy.plan.capture import sample_percent
from bgdeploy.plan.cohort import nginx_variable
from bgdeploy.plan.names import COLOURS
from bgdeploy.spec.router_rules import HEALTH_PATH_RE, MAX_READ_TIMEOUT_S

_NAME_RE = re.compile(r"^[a-z0-9-]+$")
# Host names, IPv4 and bracketed IPv6 addresses, always with a port: nothing that could end a directive.
_ADDRESS_RE = re.compile(r"^(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_LOG_PATH_RE = re.compile(r"^/[A-Za-z0-9._/+@=,:-]*$")
_CAPTURE_PATH_RE = re.compile(r"^/v1/[A-Za-z0-9/_.-]{1,120}$")
_HEADER_RE = re.compile(
    r"^# managed by bgdeploy for deployment (?P<deployment>[a-z0-9-]+): do not edit; "
    r"live=(?P<live>[a-z]+) weights=(?P<weights>[a-z]+:[0-9]+(?:,[a-z]+:[0-9]+)*)"
    r"(?: config=(?P<config>[0-9a-f]{12}))?\s*$"
)
# The rendered http block names its own id (header line and X-Bgdeploy-Config): the placeholder is replaced by
# the first 12 hex digits of the SHA-256 of the text around it, so a probe through nginx tells which config
# nginx has loaded, and the file on disk tells which config was written.
_CONFIG_MARK = "@@bgdeploy-config@@"
CONFIG_HEADER = "X-Bgdeploy-Config"

# Health probes must answer quickly; a slow /health is as good as a failed one.
_HEALTH_TIMEOUT = "10s"
_CONNECT_TIMEOUT = "5s"


@dataclass(frozen=True)
class Backend:
    """One colour's server as nginx reaches it, and its share of requests in percent."""

    colour: str
    address: str
    weight: int


@dataclass(frozen=True)
class RouterConfig:
    """Everything the router configuration depends on."""

    name: str
    listen: int
    bind: str
    read_timeout_s: float
    backends: tuple[Backend, ...]
    access_log: str
    health_path: str = "/health"
    # Sticky cohorts (rollout.cohort): the split is keyed by this request attribute ("header:X-User-Id",
    # "cookie:NAME", "ip") instead of the request id; requests without it follow `cohort_fallback`.
    cohort_by: str | None = None
    cohort_fallback: str = "request"
    # Capture (validation.replay.capture): a sample of JSON bodies on these paths goes to `capture_log` (on the
    # host; a keeper bounds it). Bodies larger than `capture_max_body` bytes are never held, so never logged.
    capture_log: str | None = None
    capture_paths: tuple[str, ...] = ()
    capture_sample: float = 0.0
    capture_max_body: int = 65536


def _ident(name: str) -> str:
    return "bgdeploy_" + name.replace("-", "_")


def _nginx_time(seconds: float) -> str:
    # nginx time values take integer units; whole seconds read better, fractions go to (rounded up) ms.
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{math.ceil(seconds * 1000)}ms"


def _listen_address(bind: str, port: int) -> str:
    host = bind[1:-1] if bind.startswith("[") and bind.endswith("]") else bind
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME_RE.match(host):
            raise ValueError(f"router bind {bind!r} is neither an IP address nor a host name") from None
        return f"{host}:{port}"
    if ip.version == 6:
        return f"[{ip.compressed}]:{port}"
    return f"{ip.compressed}:{port}"


def _validate(cfg: RouterConfig) -> tuple[Backend, ...]:
    """Check the config and return the backends that get traffic; ValueError says what is wrong."""
    if not _NAME_RE.match(cfg.name):
        raise ValueError(f"deployment name {cfg.name!r} must be lower-case letters, digits and '-'")
    if isinstance(cfg.listen, bool) or not 1 <= cfg.listen <= 65535:
        raise ValueError(f"router listen port {cfg.listen!r} is not between 1 and 65535")
    if not math.isfinite(cfg.read_timeout_s) or not 0 < cfg.read_timeout_s <= MAX_READ_TIMEOUT_S:
        raise ValueError(f"router read timeout {cfg.read_timeout_s!r} must be between 0 and a day (in seconds)")
    if not _LOG_PATH_RE.match(cfg.access_log):
        raise ValueError(f"access log {cfg.access_log!r} must be an absolute path of plain characters")
    if cfg.cohort_by is not None:
        nginx_variable(cfg.cohort_by)  # ValueError names the key
        if cfg.cohort_fallback not in ("request", "live"):
            raise ValueError(f"cohort fallback {cfg.cohort_fallback!r} must be request or live")
    if cfg.capture_log is not None:
        if not _LOG_PATH_RE.match(cfg.capture_log):
            raise ValueError(f"capture file {cfg.capture_log!r} must be an absolute path of plain characters")
        if not cfg.capture_paths or not all(_CAPTURE_PATH_RE.match(p) for p in cfg.capture_paths):
            raise ValueError(f"capture paths {list(cfg.capture_paths)!r} must be /v1/ paths of plain characters")
        # Each is its own exact location: nginx refuses a duplicate one (a path twice, or the health path).
        located = [*cfg.capture_paths, cfg.health_path.partition("?")[0]]
        if len(set(located)) != len(located):
            raise ValueError(f"capture paths {list(cfg.capture_paths)!r} repeat a path or the health path")
        if not 0.0001 <= cfg.capture_sample <= 1 or not 1024 <= cfg.capture_max_body <= 64 * 1024 * 1024:
            raise ValueError("capture sample must be 0.0001-1 and the largest body 1k-64m")
    if not HEALTH_PATH_RE.match(cfg.health_path):
        raise ValueError(f"health path {cfg.health_path!r} must start with '/' and hold only plain URL characters")
    seen: set[str] = set()
    for backend in cfg.backends:
        if backend.colour not in COLOURS:
            raise ValueError(f"backend colour {backend.colour!r} is not one of {', '.join(COLOURS)}")
        if backend.colour in seen:
            raise ValueError(f"backend colour {backend.colour} is given twice")
        seen.add(backend.colour)
        if isinstance(backend.weight, bool) or not 0 <= backend.weight <= 100:
            raise ValueError(f"weight of {backend.colour} is {backend.weight!r}, not between 0 and 100")
        if not _ADDRESS_RE.match(backend.address):
            raise ValueError(f"address of {backend.colour} is {backend.address!r}, not HOST:PORT")
    # A stopped colour's host name may not resolve, and nginx refuses a config naming such a host: leave it out.
    active = tuple(b for b in cfg.backends if b.weight > 0)
    if not active:
        raise ValueError("the router needs at least one backend with a weight above 0")
    total = sum(b.weight for b in active)
    if total != 100:
        weights = ", ".join(f"{b.colour} {b.weight}" for b in active)
        raise ValueError(f"backend weights must add up to 100, got {total} ({weights})")
    return active


def _live(cfg: RouterConfig) -> str:
    # The colour with the most traffic; on a 50/50 tie, the first given (the caller lists the old colour first).
    best = max(cfg.backends, key=lambda b: b.weight)
    return best.colour


def _header(cfg: RouterConfig) -> str:
    weights = ",".join(f"{b.colour}:{b.weight}" for b in cfg.backends)
    return (
        f"# managed by bgdeploy for deployment {cfg.name}: do not edit; live={_live(cfg)} weights={weights} "
        f"config={_CONFIG_MARK}"
    )


def _stamp(text: str) -> str:
    config_id = hashlib.sha256(text.encode()).hexdigest()[:12]
    return text.replace(_CONFIG_MARK, config_id)


def _proxy_settings(upstream: str, colour_var: str, name: str, read_timeout: str, connect_timeout: str) -> list[str]:
    return [
        f"proxy_pass http://{upstream}_${colour_var};",
        # Streaming (SSE) answers must reach the client token by token, and uploads go straight through.
        "proxy_buffering off;",
        "proxy_request_buffering off;",
        # HTTP/1.1 with an empty Connection header lets the upstream keepalive pool reuse connections.
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $host;",
        "proxy_set_header X-Request-Id $request_id;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        f"proxy_read_timeout {read_timeout};",
        f"proxy_send_timeout {read_timeout};",
        f"proxy_connect_timeout {connect_timeout};",
        # Only a failed connect is worth another try; nginx never replays a POST that reached the upstream.
        "proxy_next_upstream error timeout;",
        # `always`: errors (502, 504) must also say which colour failed.
        f"add_header X-Bgdeploy-Colour ${colour_var} always;",
        f"add_header X-Bgdeploy-Deployment {name} always;",
        f"add_header {CONFIG_HEADER} {_CONFIG_MARK} always;",
    ]


def _block(head: str, body: list[str], indent: str = "    ") -> list[str]:
    return [f"{head} {{", *[f"{indent}{line}" if line else "" for line in body], "}"]


def _cohort_split(cfg: RouterConfig, active: tuple[Backend, ...], ident: str, colour_var: str) -> list[str]:
    """Sticky cohorts: split on the user's key with the NEW colour (listed last by the caller) first, so its
    slice of the hash range only grows with its weight; requests without the key follow the fallback."""
    assert cfg.cohort_by is not None
    old, new = active[0], active[-1]
    key = nginx_variable(cfg.cohort_by)
    entries = [f"{new.weight}% {new.colour};", f"* {old.colour};"]
    lines = _block(f'split_clients "${{{key}}}" ${ident}_cohort', entries)
    lines.append("")
    if cfg.cohort_fallback == "request":
        lines += _block(f'split_clients "${{request_id}}" ${ident}_keyless', entries)
        lines.append("")
        fallback = f"${ident}_keyless"
    else:
        fallback = old.colour
    # Only the chosen colour is ever logged; the key itself stays out of every log format.
    lines += _block(f"map ${key} ${colour_var}", [f'"" {fallback};', f"default ${ident}_cohort;"])
    return lines


def _capture_http(cfg: RouterConfig, ident: str) -> list[str]:
    """Which requests are captured: a sample (on the request id) of POSTs with a JSON body; only the body and
    its path are written (escape=json), nothing else of the request."""
    lines = [
        f"log_format {ident}_capture escape=json",
        '    \'{"ts":"$msec","path":"$uri","body":"$request_body"}\';',
        "",
    ]
    if cfg.capture_sample >= 1:
        lines += _block(f"map $request_id ${ident}_capture_pick", ["default 1;"])
    else:
        lines += _block(
            f'split_clients "${{request_id}}" ${ident}_capture_pick',
            [f"{sample_percent(cfg.capture_sample)} 1;", "* 0;"],
        )
    lines.append("")
    lines += _block(f"map $content_type ${ident}_capture_json", ["~*^application/json 1;", "default 0;"])
    lines.append("")
    lines += _block(
        f'map "${ident}_capture_pick${ident}_capture_json$request_method" ${ident}_capture',
        ['"11POST" 1;', "default 0;"],
    )
    lines.append("")
    return lines


def _capture_locations(cfg: RouterConfig, ident: str, colour_var: str, read_timeout: str) -> list[str]:
    """One exact location per captured path: the body is held in memory (up to the cap) so nginx can log it."""
    assert cfg.capture_log is not None
    lines: list[str] = []
    for path in cfg.capture_paths:
        proxy = _proxy_settings(ident, colour_var, cfg.name, read_timeout, _CONNECT_TIMEOUT)
        proxy = ["proxy_request_buffering on;" if p == "proxy_request_buffering off;" else p for p in proxy]
        body = [
            *proxy,
            f"client_body_buffer_size {cfg.capture_max_body};",
            "client_body_in_single_buffer on;",
            f"access_log {cfg.access_log} {ident};",
            f"access_log {cfg.capture_log} {ident}_capture if=${ident}_capture;",
        ]
        lines += [*_block(f"location = {path}", body), ""]
    return lines


def render_http_block(cfg: RouterConfig) -> str:
    """The http-level configuration of one deployment: log format, upstreams, colour choice and the server."""
    active = _validate(cfg)
    ident = _ident(cfg.name)
    colour_var = f"{ident}_colour"
    served_var = f"{ident}_served"
    read_timeout = _nginx_time(cfg.read_timeout_s)
    lines: list[str] = [_header(cfg), ""]

    # One JSON object per line; values are strings (status too: nginx writes "000" when no status was sent,
    # which is not a JSON number), so `parse_access_log` reads every field the same way.
    lines += [
        f"log_format {ident} escape=json",
        f'    \'{{"ts":"$msec","colour":"${served_var}","status":"$status",\'',
        '    \'"request_time":"$request_time","upstream_response_time":"$upstream_response_time",\'',
        '    \'"upstream_addr":"$upstream_addr","method":"$request_method","uri":"$uri",\'',
        '    \'"request_id":"$request_id","bytes":$body_bytes_sent}\';',
        "",
    ]
    if cfg.capture_log is not None:
        lines += _capture_http(cfg, ident)

    for backend in active:
        lines += _block(
            f"upstream {ident}_{backend.colour}",
            # max_fails=0: a single server must never be marked down, or every request would fail for a while.
            [f"server {backend.address} max_fails=0;", "keepalive 32;"],
        )
        lines.append("")

    if len(active) == 1:
        lines += _block(f"map $request_id ${colour_var}", [f"default {active[0].colour};"])
    elif cfg.cohort_by is not None:
        lines += _cohort_split(cfg, active, ident, colour_var)
    else:
        # The smaller share gets its exact percentage and the rest takes `*`, so no request is left unassigned.
        ordered = sorted(active, key=lambda b: b.weight)
        entries = [f"{b.weight}% {b.colour};" for b in ordered[:-1]] + [f"* {ordered[-1].colour};"]
        lines += _block(f'split_clients "${{request_id}}" ${colour_var}', entries)
    lines.append("")
    # Requests no colour served (the router's own 404s) are logged without a colour, so they never count as
    # live traffic of a colour.
    lines += _block(f"map $upstream_addr ${served_var}", ['"" "";', f"default ${colour_var};"])
    lines.append("")

    not_found = (
        '{"error":{"message":"not found: this router serves only /v1/ and '
        + cfg.health_path
        + '","type":"not_found","code":404}}'
    )
    server: list[str] = [
        f"listen {_listen_address(cfg.bind, cfg.listen)};",
        f"access_log {cfg.access_log} {ident};",
        "",
        *(_capture_locations(cfg, ident, colour_var, read_timeout) if cfg.capture_log is not None else []),
        *_block("location /v1/", _proxy_settings(ident, colour_var, cfg.name, read_timeout, _CONNECT_TIMEOUT)),
        "",
        *_block(
            # nginx matches a location on the path alone; a query string reaches the server unchanged.
            f"location = {cfg.health_path.partition('?')[0]}",
            _proxy_settings(ident, colour_var, cfg.name, _HEALTH_TIMEOUT, _CONNECT_TIMEOUT),
        ),
        "",
        # Nothing else is exposed (vLLM's /metrics and admin endpoints stay private to the host).
        *_block(
            "location /",
            [
                "default_type application/json;",
                f"add_header X-Bgdeploy-Deployment {cfg.name} always;",
                f"add_header {CONFIG_HEADER} {_CONFIG_MARK} always;",
                f"return 404 '{not_found}';",
            ],
        ),
    ]
    lines += _block("server", server)
    return _stamp("\n".join(lines) + "\n")


def render_full_conf(cfg: RouterConfig, *, runtime_dir: str = "/tmp") -> str:
    """A self-contained nginx.conf for the router container (official nginx image or Debian's nginx).

    The pid file and all temporary paths live under `runtime_dir`, so nginx runs with a read-only /etc and
    /var; no `user` directive and no mime.types include, so it does not depend on the image's layout.
    """
    if not _LOG_PATH_RE.match(runtime_dir):
        raise ValueError(f"runtime dir {runtime_dir!r} must be an absolute path of plain characters")
    base = runtime_dir.rstrip("/") or ""
    http = render_http_block(cfg).rstrip("\n").split("\n")
    http_settings = [
        "client_max_body_size 32m;",
        "server_tokens off;",
        "default_type application/octet-stream;",
        "keepalive_timeout 65s;",
        # Every temp path is set: nginx creates the compiled-in ones at startup otherwise, under a read-only /var.
        f"client_body_temp_path {base}/nginx-bgdeploy-client-body;",
        f"proxy_temp_path {base}/nginx-bgdeploy-proxy;",
        f"fastcgi_temp_path {base}/nginx-bgdeploy-fastcgi;",
        f"uwsgi_temp_path {base}/nginx-bgdeploy-uwsgi;",
        f"scgi_temp_path {base}/nginx-bgdeploy-scgi;",
        "",
    ]
    lines = [
        http[0],  # the http block's own header line: the same config id
        "worker_processes auto;",
        f"pid {base}/nginx-bgdeploy.pid;",
        # notice, not info: info logs every closed keepalive connection; reloads and upstream errors still show.
        "error_log /dev/stderr notice;",
        "",
        *_block("events", ["worker_connections 4096;"]),
        "",
        *_block("http", http_settings + http),
    ]
    return "\n".join(lines) + "\n"


def parse_managed_header(text: str) -> dict[str, str] | None:
    """Read back the managed-by line: {"deployment", "live", "weights"} ("blue:90,green:10"), or None."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            # The header is the first line of a file bgdeploy wrote; anything else first means someone else's.
            return None
        match = _HEADER_RE.match(stripped)
        if match is not None:
            return {key: match.group(key) for key in ("deployment", "live", "weights")}
        return None
    return None


def managed_config_id(text: str) -> str | None:
    """The config id a rendered file names in its header (compare with the X-Bgdeploy-Config nginx answers)."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped:
            match = _HEADER_RE.match(stripped)
            return match.group("config") if match is not None else None
    return None
