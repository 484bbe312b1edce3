"""router.mode: container: bgdeploy's own nginx in a container on the deployment's Docker network.

The container publishes router.bind:router.listen and mounts the state directory's router/ (config and
logs). Its labels record the image, listen and bind it was started with, so a change of any of them is
seen and rolled out: the old nginx quits gracefully (in-flight answers finish), then the new one starts.
"""

from __future__ import annotations

from bgdeploy.errors import TransportError
from bgdeploy.plan.names import LABEL_PREFIX, Colour
from bgdeploy.plan.nginx import Backend, RouterConfig, render_full_conf
from bgdeploy.plan.steps import port_in_use
from bgdeploy.routers.base import NginxBase
from bgdeploy.spec.models import size_bytes
from bgdeploy.transports.docker_engine import ROUTER_PORT, ContainerInfo
from bgdeploy.transports.http import ServerClient

CONTAINER_CONF = "/etc/bgdeploy/nginx.conf"
CONTAINER_LOG = "/etc/bgdeploy/logs/access.log"
SETTINGS = ("router-image", "router-listen", "router-bind")


def nginx_argv(args: tuple[str, ...] | list[str]) -> list[str]:
    """nginx inside the router container, always against bgdeploy's own config file."""
    return ["nginx", *args, "-c", CONTAINER_CONF]


def router_labels(name: str, image: str, listen: int, bind: str) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}name": name,
        f"{LABEL_PREFIX}role": "router",
        f"{LABEL_PREFIX}router-image": image,
        f"{LABEL_PREFIX}router-listen": str(listen),
        f"{LABEL_PREFIX}router-bind": bind,
    }


def settings_changed(info: ContainerInfo, wanted: dict[str, str]) -> list[str]:
    """Which router settings the running container differs in (labels missing: an older bgdeploy; no change)."""
    changed = []
    for key in SETTINGS:
        have = info.labels.get(f"{LABEL_PREFIX}{key}")
        if have is not None and have != wanted[f"{LABEL_PREFIX}{key}"]:
            changed.append(f"{key.removeprefix('router-')} {have} → {wanted[f'{LABEL_PREFIX}{key}']}")
    return changed


class ContainerNginx(NginxBase):
    kind = "container"

    @property
    def config_path(self) -> str:
        return f"{self.layout.router_dir}/nginx.conf"

    @property
    def access_log(self) -> str:
        return f"{self.layout.router_logs}/access.log"

    @property
    def host_include(self) -> str | None:
        return None

    @property
    def container_image(self) -> str | None:
        return self.spec.router.image

    def _router_config(self, backends: tuple[Backend, ...]) -> RouterConfig:
        cohort = self.spec.rollout.cohort
        replay = self.spec.validation.replay
        capture = replay.capture if replay is not None else None
        return RouterConfig(
            name=self.spec.name,
            listen=ROUTER_PORT,
            bind="0.0.0.0",
            read_timeout_s=self.spec.router.read_timeout,
            backends=backends,
            access_log=CONTAINER_LOG,
            health_path=self.spec.health.path,
            cohort_by=cohort.by if cohort is not None else None,
            cohort_fallback=cohort.fallback if cohort is not None else "request",
            capture_log=None if capture is None else "/etc/bgdeploy/capture/capture.jsonl",
            capture_paths=() if capture is None else tuple(capture.paths),
            capture_sample=0.0 if capture is None else capture.sample,
            capture_max_body=65536 if capture is None else size_bytes(capture.max_body),
        )

    def _render_text(self, cfg: RouterConfig) -> str:
        return render_full_conf(cfg)

    def address(self, colour: Colour, info: ContainerInfo) -> str | None:
        # The colour's own release port (its label), on the shared Docker network.
        port = info.label("port") or str(self.spec.runtime.port)
        return f"{self.layout.container(colour)}:{port}"

    def _wanted_labels(self) -> dict[str, str]:
        r = self.spec.router
        return router_labels(self.spec.name, r.image, r.listen, r.bind)

    def running(self) -> bool:
        info = self.session.engine.inspect(self.layout.router_container)
        return info is not None and info.running and not settings_changed(info, self._wanted_labels())

    def ensure_running(self) -> bool:
        session, engine, spec = self.session, self.session.engine, self.spec
        name = self.layout.router_container
        info = engine.inspect(name)
        wanted = self._wanted_labels()
        if info is not None and info.running:
            changed = settings_changed(info, wanted)
            if not changed:
                return False
            session.out.say(f"router: settings changed ({'; '.join(changed)}): replacing {name}")
            started = session.clock.now()
            self._quit_gracefully(name)
        else:
            started = session.clock.now()
            if info is not None:
                engine.remove(name)
        session.out.say(f"router: starting {name} ({spec.router.image}) on {spec.router.bind}:{spec.router.listen}")
        engine.ensure_network(self.layout.network)
        engine.run_router(
            name,
            spec.router.image,
            self.layout.network,
            (spec.router.bind, spec.router.listen),
            self.layout.router_dir,
            wanted,
        )
        if self._wait_listening():
            # From the old nginx's graceful quit (it stops accepting at once) to the new one accepting.
            session.result.figures["router_gap_ms"] = round((session.clock.now() - started) * 1000, 1)
        return True

    def _quit_gracefully(self, name: str) -> None:
        """`nginx -s quit`: stop accepting, let in-flight answers finish (bounded by the drain timeout)."""
        engine = self.session.engine
        try:
            engine.exec(name, nginx_argv(["-s", "quit"]))
        except TransportError as exc:
            self.session.warn(f"graceful quit of {name} failed ({exc}); stopping it")
        clock = self.session.clock
        deadline = clock.now() + self.spec.rollout.drain_timeout + 10
        while clock.now() < deadline:
            info = engine.inspect(name)
            if info is None or not info.running:
                break
            clock.sleep(0.1)
        engine.remove(name)

    def _wait_listening(self, timeout: float = 30.0) -> bool:
        """Poll until the new router answers on its listener (any HTTP answer); False when it never did."""
        clock = self.session.clock
        deadline = clock.now() + timeout
        with ServerClient(f"http://127.0.0.1:{self.probe_port()}", timeout=5) as client:
            while clock.now() < deadline:
                if client.probe(self.spec.health.path, timeout=2).state != "loading":  # loading: refused
                    return True
                clock.sleep(0.02)
        return False

    def nginx(self, *args: str) -> tuple[int, str]:
        return self.session.engine.exec(self.layout.router_container, nginx_argv(args))

    def probe_port(self) -> int:
        bind = self.spec.router.bind
        address = "127.0.0.1" if bind in ("0.0.0.0", "::", "127.0.0.1") else bind
        return self.session.host.reach(self.spec.router.listen, address)

    def remove(self) -> None:
        self.session.host.remove(self.config_path)
        self.session.engine.remove(self.layout.router_container)

    def colour_network(self) -> str | None:
        return self.layout.network

    def host_port(self, colour: Colour) -> int | None:
        return None  # the router reaches colours by name on the network; the host port only serves checks

    def preflight(self) -> list[str]:
        """Before a router container binds router.bind:router.listen, nothing else may listen there."""
        info = self.session.engine.inspect(self.layout.router_container)
        current = info is not None and not settings_changed(info, self._wanted_labels())
        spec = self.spec
        if current or (info is not None and info.labels.get(f"{LABEL_PREFIX}router-listen") == str(spec.router.listen)):
            return []
        done = self.session.host.run(["ss", "-Hltn"], timeout=15)
        if not done.ok:
            self.session.warn("could not check that the router's port is free (`ss` is missing on the host)")
            return []
        holder = port_in_use(done.stdout, spec.router.bind, spec.router.listen)
        if holder is None:
            return []
        return [
            f"router.listen {spec.router.bind}:{spec.router.listen} is already in use on the host ({holder} is "
            "listening); choose another router.listen, or stop what listens there"
        ]
