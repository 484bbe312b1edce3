"""Point the router (nginx) at colours without dropping a request, and prove it took effect.

The whole config is rendered, uploaded under a temporary name and renamed into place (the old one kept
aside), then `nginx -t`; a failing test restores the old file and aborts with nginx's own words. A
reload's exit code proves nothing, so the colour that answers through nginx is checked afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping

from bgdeploy.errors import DeployFailed
from bgdeploy.execute.observe import router_config_path
from bgdeploy.execute.session import Session
from bgdeploy.plan.names import LABEL_PREFIX, Colour
from bgdeploy.plan.nginx import Backend, RouterConfig, render_full_conf, render_http_block
from bgdeploy.spec.models import size_bytes
from bgdeploy.transports.docker_engine import ROUTER_PORT
from bgdeploy.transports.http import ServerClient

CONTAINER_CONF = "/etc/bgdeploy/nginx.conf"
CONFIRM_TIMEOUT = 30.0
CONFIRM_STREAK = 3  # consecutive answers from the expected colour before the switch counts as done


def access_log_path(session: Session) -> str:
    """The access log as the host sees it (bake analysis reads it there)."""
    return f"{session.layout.router_logs}/access.log"


def _config(session: Session, weights: Mapping[Colour, int], host_ports: Mapping[Colour, int | None]) -> str:
    spec = session.loaded.spec
    layout = session.layout
    backends = []
    for colour, weight in weights.items():
        if spec.router.mode == "container":
            address = f"{layout.container(colour)}:{spec.runtime.port}"
        else:
            port = host_ports.get(colour)
            if port is None:
                raise DeployFailed(f"the {colour} container publishes no port; cannot route to it")
            address = f"127.0.0.1:{port}"
        backends.append(Backend(colour, address, weight))
    container = spec.router.mode == "container"
    cfg = RouterConfig(
        name=spec.name,
        listen=ROUTER_PORT if container else spec.router.listen,
        bind="0.0.0.0" if container else spec.router.bind,
        read_timeout_s=spec.router.read_timeout,
        backends=tuple(backends),
        access_log="/etc/bgdeploy/logs/access.log" if container else access_log_path(session),
        health_path=spec.health.path,
    )
    return render_full_conf(cfg) if container else render_http_block(cfg)


def _nginx(session: Session, *args: str) -> tuple[int, str]:
    spec = session.loaded.spec
    if spec.router.mode == "container":
        return session.engine.exec(session.layout.router_container, ["nginx", *args, "-c", CONTAINER_CONF])
    argv = (["sudo", "-n"] if spec.router.sudo else []) + ["nginx", *args]
    done = session.host.run(argv, timeout=60)
    return done.exit_code, (done.stderr + done.stdout).strip()


def router_port(session: Session) -> int:
    """A local port reaching the router's listener on the host."""
    bind = session.loaded.spec.router.bind
    address = "127.0.0.1" if bind in ("0.0.0.0", "::", "127.0.0.1") else bind
    return session.host.reach(session.loaded.spec.router.listen, address)


def _start_router_container(session: Session) -> None:
    spec = session.loaded.spec
    layout = session.layout
    engine = session.engine
    info = engine.inspect(layout.router_container)
    if info is not None and info.running:
        return
    if info is not None:
        engine.remove(layout.router_container)
    session.out.say(
        f"router: starting {layout.router_container} ({spec.router.image}) on {spec.router.bind}:{spec.router.listen}"
    )
    engine.ensure_network(layout.network)
    engine.run_router(
        layout.router_container,
        spec.router.image,
        layout.network,
        (spec.router.bind, spec.router.listen),
        layout.router_dir,
        {f"{LABEL_PREFIX}name": spec.name, f"{LABEL_PREFIX}role": "router"},
    )


def apply_weights(
    session: Session,
    weights: Mapping[Colour, int],
    host_ports: Mapping[Colour, int | None],
    *,
    confirm: Colour | None,
) -> None:
    """Make the router send `weights` (percent per colour); confirm `confirm` answers when given."""
    spec = session.loaded.spec
    host = session.host
    path = router_config_path(session)
    text = _config(session, {c: w for c, w in weights.items() if w > 0}, host_ports)
    host.makedirs(session.layout.router_logs)
    old = host.read_file(path)
    if old is not None and old.decode(errors="replace") == text:
        session.out.say("router: configuration already up to date")
    else:
        host.write_file(f"{path}.next", text.encode())
        if old is not None:
            host.write_file(f"{path}.prev", old)
        host.rename(f"{path}.next", path)
    router_up = True
    if spec.router.mode == "container":
        info = session.engine.inspect(session.layout.router_container)
        router_up = info is not None and info.running
    if not router_up:
        _start_router_container(session)
    else:
        code, output = _nginx(session, "-t")
        if code != 0:
            _restore(session, path, old)
            raise DeployFailed(f"nginx -t refused the new router config, so the old one was restored: {output}")
        code, output = _nginx(session, "-s", "reload")
        if code != 0:
            _restore(session, path, old)
            raise DeployFailed(f"nginx -s reload failed, so the old config was restored: {output}")
    if confirm is not None:
        confirm_colour(session, confirm)


def rotate_access_log(session: Session) -> None:
    """Keep the access log bounded: past router.access_log_max it moves to access.log.1 and nginx reopens.

    Done before traffic moves, so that the bake and canary analysis read a fresh, small log.
    """
    path = access_log_path(session)
    limit = size_bytes(session.loaded.spec.router.access_log_max)
    size = session.host.size(path)
    if size <= limit:
        return
    session.host.rename(path, f"{path}.1")
    code, output = _nginx(session, "-s", "reopen")
    if code != 0:
        session.warn(f"nginx -s reopen after rotating the access log failed: {output}")
    else:
        session.out.say(f"router: rotated the access log ({size // 1024} KiB > {limit // 1024} KiB)")


def remove_routing(session: Session) -> None:
    """Take this deployment out of the router entirely (a first deploy that failed after its switch)."""
    session.host.remove(router_config_path(session))
    if session.loaded.spec.router.mode == "container":
        session.engine.remove(session.layout.router_container)
    else:
        code, output = _nginx(session, "-s", "reload")
        if code != 0:
            session.warn(f"nginx -s reload after removing {router_config_path(session)} failed: {output}")


def _restore(session: Session, path: str, old: bytes | None) -> None:
    if old is None:
        session.host.remove(path)
    else:
        session.host.write_file(path, old)


def confirm_colour(session: Session, colour: Colour) -> None:
    """Ask through nginx until `colour` answers CONFIRM_STREAK times in a row (a reload is not proof)."""
    spec = session.loaded.spec
    seen: list[str] = []
    streak = 0
    deadline = session.clock.now() + CONFIRM_TIMEOUT
    with ServerClient(f"http://127.0.0.1:{router_port(session)}", timeout=10) as client:
        while True:
            probe = client.probe(spec.health.path, timeout=5)
            answered = probe.headers.get("x-bgdeploy-colour", "")
            seen.append(answered or probe.detail)
            streak = streak + 1 if probe.state == "ready" and answered == colour else 0
            if streak >= CONFIRM_STREAK:
                session.out.say(f"router: confirmed, {colour} answers through nginx")
                return
            if session.clock.now() >= deadline:
                raise DeployFailed(
                    f"after the reload, {colour} did not answer through the router within {CONFIRM_TIMEOUT:g}s "
                    f"(last answers: {', '.join(seen[-5:])}); check the router container's logs"
                )
            session.clock.sleep(0.05)
