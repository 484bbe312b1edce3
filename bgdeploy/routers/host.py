"""router.mode: host: the host's own nginx; bgdeploy owns one include file and reaches the colours on the
host's 127.0.0.1, each on a fixed host port recorded in its labels (so a restart of the container or of
dockerd keeps the address the config names)."""

from __future__ import annotations

from bgdeploy.errors import TransportError
from bgdeploy.plan.names import Colour, other
from bgdeploy.plan.nginx import Backend, RouterConfig, render_http_block
from bgdeploy.plan.routing import ProbeTally, choose_host_port, listening_ports
from bgdeploy.routers.base import NginxBase
from bgdeploy.spec.models import size_bytes
from bgdeploy.transports.docker_engine import ContainerInfo
from bgdeploy.transports.http import ServerClient


def nginx_argv(args: tuple[str, ...] | list[str], *, sudo: bool) -> list[str]:
    """The host's nginx (its own main config, which includes ours), through `sudo -n` when configured."""
    return (["sudo", "-n"] if sudo else []) + ["nginx", *args]


class HostNginx(NginxBase):
    kind = "host"

    @property
    def config_path(self) -> str:
        return self.spec.router.config_path or self.layout.host_include()

    @property
    def access_log(self) -> str:
        return f"{self.layout.router_logs}/access.log"

    @property
    def host_include(self) -> str | None:
        return self.config_path

    @property
    def container_image(self) -> str | None:
        return None

    def _router_config(self, backends: tuple[Backend, ...]) -> RouterConfig:
        cohort = self.spec.rollout.cohort
        replay = self.spec.validation.replay
        capture = replay.capture if replay is not None else None
        return RouterConfig(
            name=self.spec.name,
            listen=self.spec.router.listen,
            bind=self.spec.router.bind,
            read_timeout_s=self.spec.router.read_timeout,
            backends=backends,
            access_log=self.access_log,
            health_path=self.spec.health.path,
            cohort_by=cohort.by if cohort is not None else None,
            cohort_fallback=cohort.fallback if cohort is not None else "request",
            capture_log=None if capture is None else f"{self.layout.router_dir}/capture/capture.jsonl",
            capture_paths=() if capture is None else tuple(capture.paths),
            capture_sample=0.0 if capture is None else capture.sample,
            capture_max_body=65536 if capture is None else size_bytes(capture.max_body),
        )

    def _render_text(self, cfg: RouterConfig) -> str:
        return render_http_block(cfg)

    def address(self, colour: Colour, info: ContainerInfo) -> str | None:
        # The port Docker publishes now; the fixed one from the labels when the container is between starts.
        port = info.host_port or (int(info.label("host-port")) if info.label("host-port").isdigit() else None)
        return None if port is None else f"127.0.0.1:{port}"

    def running(self) -> bool:
        return True  # the host's nginx belongs to the host's admin; a failed reload says when it is down

    def ensure_running(self) -> bool:
        return False

    def nginx(self, *args: str) -> tuple[int, str]:
        done = self.session.host.run(nginx_argv(args, sudo=self.spec.router.sudo), timeout=60)
        return done.exit_code, (done.stderr + done.stdout).strip()

    def probe_port(self) -> int:
        bind = self.spec.router.bind
        address = "127.0.0.1" if bind in ("0.0.0.0", "::", "127.0.0.1") else bind
        return self.session.host.reach(self.spec.router.listen, address)

    def remove(self) -> None:
        self.session.host.remove(self.config_path)
        code, output = self.nginx("-s", "reload")
        if code != 0:
            self.session.warn(f"nginx -s reload after removing {self.config_path} failed: {output}")

    def colour_network(self) -> str | None:
        return None

    def host_port(self, colour: Colour) -> int | None:
        """A port that stays the colour's across restarts: chosen free at its first start, then kept."""
        engine = self.session.engine
        own = engine.inspect(self.layout.container(colour))
        peer = engine.inspect(self.layout.container(other(colour)))
        claimed = {int(i.label("host-port")) for i in (peer,) if i is not None and i.label("host-port").isdigit()}
        done = self.session.host.run(["ss", "-Hltn"], timeout=15)
        busy = listening_ports(done.stdout) if done.ok else set()
        if own is not None and own.label("host-port").isdigit():
            kept = int(own.label("host-port"))
            if kept not in claimed and (own.running or kept not in busy):
                return kept
        return choose_host_port(self.spec.name, colour, busy | claimed)

    def preflight(self) -> list[str]:
        """Another deployment's server on router.bind:router.listen would take the requests meant for this one
        (nginx only warns about a duplicate listener): refuse before anything starts."""
        tally = ProbeTally()
        try:
            with ServerClient(f"http://127.0.0.1:{self.probe_port()}", timeout=5) as client:
                for _ in range(2):
                    probe = client.probe(self.spec.health.path, timeout=5)
                    if probe.state != "loading":
                        tally.add(probe.headers)
        except TransportError:
            return []
        other_name = tally.deployment(self.spec.name)
        if other_name is None or other_name == self.spec.name:
            return []
        r = self.spec.router
        return [
            f"deployment {other_name} already answers on {r.bind}:{r.listen} (the host's nginx would send this "
            "deployment's requests there): give this deployment another router.listen, or remove the other one "
            f"(`bgdeploy remove` with its spec)"
        ]
