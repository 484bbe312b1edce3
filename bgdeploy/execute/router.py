"""Point the router at colours without dropping a request, and prove it took effect.

The router kind (container nginx, host nginx) is `session.router` (bgdeploy/routers/); this module is the
procedure every kind shares. The whole config is rendered from the containers as they are now (each colour
at its own labels' address; a colour that does not run is refused), uploaded under a temporary name and
renamed into place (the old one kept aside), then `nginx -t`; a failing test restores the old file and
aborts with nginx's own words. A reload's exit code proves nothing, so the config id and the colour that
answer through nginx are checked afterwards; when they never do, the previous config is put back.
"""

from __future__ import annotations

from collections.abc import Mapping

from bgdeploy.capture import keeper as capture_keeper
from bgdeploy.errors import BgdeployError, DeployFailed
from bgdeploy.execute import failpoints
from bgdeploy.execute.session import Session
from bgdeploy.plan.names import COLOURS, Colour
from bgdeploy.plan.nginx import managed_config_id
from bgdeploy.spec.models import size_bytes
from bgdeploy.transports.docker_engine import ContainerInfo

CONFIRM_TIMEOUT = 30.0
CONFIRM_STREAK = 3  # consecutive answers from the expected config (and colour) before the switch counts as done


def access_log_path(session: Session) -> str:
    """The access log as the host sees it (bake analysis reads it there)."""
    return session.router.access_log


def router_port(session: Session) -> int:
    """A local port reaching the router's listener on the host."""
    return session.router.probe_port()


def colour_infos(session: Session) -> dict[Colour, ContainerInfo | None]:
    port = session.loaded.spec.runtime.port
    return {c: session.engine.inspect(session.layout.container(c), port) for c in COLOURS}


def apply_weights(
    session: Session,
    weights: Mapping[Colour, int],
    host_ports: Mapping[Colour, int | None] | None = None,
    *,
    confirm: Colour | None,
) -> None:
    """Make the router send `weights` (percent per colour) and confirm through nginx that it does.

    `host_ports` is not used (kept for callers): each colour's address comes from its container as it is now.
    `confirm`: the colour that must answer (a split config confirms only its id).
    """
    del host_ports
    router = session.router
    host = session.host
    path = router.config_path
    text = router.render({c: w for c, w in weights.items() if w > 0}, colour_infos(session))
    host.makedirs(session.layout.router_logs)
    # With capture on, the capture file and its keeper exist before nginx opens the file.
    capture_keeper.ensure(session)
    old = host.read_file(path)
    if old is not None and old.decode(errors="replace") == text:
        session.out.say("router: configuration already up to date")
    else:
        host.write_file(f"{path}.next", text.encode())
        if old is not None:
            host.write_file(f"{path}.prev", old)
        host.rename(f"{path}.next", path)
    _load(session, path, old)
    try:
        confirm_config(session, managed_config_id(text), confirm)
    except DeployFailed as exc:
        if old is not None and old.decode(errors="replace") != text:
            try:
                _restore(session, path, old)
                _reload(session)
            except BgdeployError as restore_error:
                session.warn(f"restoring the previous router config failed too: {restore_error}")
            raise DeployFailed(f"{exc}; the previous router config was put back") from exc
        raise
    # With capture off, what an earlier config captured goes once nginx no longer writes it.
    capture_keeper.retire_if_off(session)


def _load(session: Session, path: str, old: bytes | None) -> None:
    """Make the router serve the file now at `path`: start it when it is down, else test and reload."""
    router = session.router
    if router.ensure_running():
        return
    code, output = router.nginx("-t")
    if code != 0:
        _restore(session, path, old)
        raise DeployFailed(f"nginx -t refused the new router config, so the old one was restored: {output}")
    try:
        _reload(session)
    except DeployFailed as exc:
        _restore(session, path, old)
        raise DeployFailed(f"{exc}; the old config was restored") from exc


def _reload(session: Session) -> None:
    try:
        failpoints.hit("router:reload", session.host)
        code, output = session.router.nginx("-s", "reload")
    except BgdeployError as exc:
        code, output = 1, str(exc)
    if code != 0:
        raise DeployFailed(f"nginx -s reload failed: {output}")


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
    code, output = session.router.nginx("-s", "reopen")
    if code != 0:
        session.warn(f"nginx -s reopen after rotating the access log failed: {output}")
    else:
        session.out.say(f"router: rotated the access log ({size // 1024} KiB > {limit // 1024} KiB)")


def remove_routing(session: Session) -> None:
    """Take this deployment out of the router entirely (a first deploy that failed after its switch)."""
    session.router.remove()


def _restore(session: Session, path: str, old: bytes | None) -> None:
    if old is None:
        session.host.remove(path)
    else:
        session.host.write_file(path, old)


def confirm_config(session: Session, config_id: str | None, colour: Colour | None) -> None:
    """Ask through nginx until it answers CONFIRM_STREAK times in a row with this deployment's name, the new
    config's id and (when given) `colour`: a reload's exit code is not proof, and another deployment's
    server on the same port answers with its own name."""
    spec = session.loaded.spec
    seen: list[str] = []
    streak = 0
    deadline = session.clock.now() + CONFIRM_TIMEOUT
    with session.client(router_port(session), timeout=10) as client:
        while True:
            probe = client.probe(spec.health.path, timeout=5)
            answered = probe.headers.get("x-bgdeploy-colour", "")
            got_id = probe.headers.get("x-bgdeploy-config", "")
            deployment = probe.headers.get("x-bgdeploy-deployment", "")
            good = (
                probe.state == "ready"
                and deployment == spec.name
                and (config_id is None or got_id == config_id)
                and (colour is None or answered == colour)
            )
            seen.append(f"{deployment or '?'}/{answered or probe.detail}/{got_id or '-'}")
            streak = streak + 1 if good else 0
            if streak >= CONFIRM_STREAK:
                what = f"{colour} answers" if colour else "the new weights are live"
                session.out.say(f"router: confirmed, {what} through nginx (config {config_id})")
                return
            if session.clock.now() >= deadline:
                raise DeployFailed(
                    f"after the reload, {'colour ' + colour if colour else 'the new config'} did not answer through "
                    f"the router as deployment {spec.name} with config {config_id} within {CONFIRM_TIMEOUT:g}s "
                    f"(last answers, deployment/colour/config: {', '.join(seen[-5:])}); check the router's logs, "
                    "and that no other deployment listens on router.listen"
                )
            session.clock.sleep(0.05)


def confirm_colour(session: Session, colour: Colour) -> None:
    """Ask through nginx until `colour` answers CONFIRM_STREAK times in a row."""
    confirm_config(session, None, colour)
