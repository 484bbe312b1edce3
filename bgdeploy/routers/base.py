"""What every router kind does: the verbs the deploy cycle uses, and what both nginx kinds share.

The verbs are Argo Rollouts' TrafficRoutingReconciler's, for nginx: write a config with weights (`install`),
make the running router take it (`test` + `reload`, or `ensure_running` when it is not up), say where the
listener is reachable (`probe_port`), reopen the access log, and remove the routing. Each colour's upstream
address comes from that colour's container (its labels), never from the current spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from bgdeploy.errors import DeployFailed
from bgdeploy.plan.names import Colour
from bgdeploy.plan.nginx import Backend, RouterConfig
from bgdeploy.transports.docker_engine import ContainerInfo

if TYPE_CHECKING:
    from bgdeploy.execute.session import Session


class Router(Protocol):
    """One router kind. Implementations: routers/container.py, routers/host.py."""

    kind: str

    @property
    def config_path(self) -> str:
        """The config file bgdeploy owns on the host."""
        ...

    @property
    def access_log(self) -> str:
        """The access log as the host sees it (the traffic analysis reads it there)."""
        ...

    @property
    def host_include(self) -> str | None:
        """The include file bgdeploy owns in the host's own nginx (None: the router is bgdeploy's container)."""
        ...

    @property
    def container_image(self) -> str | None:
        """The image the router container runs (None: the router is the host's own nginx)."""
        ...

    def render(self, weights: Mapping[Colour, int], colours: Mapping[Colour, ContainerInfo | None]) -> str:
        """The whole config for these weights (percent per colour), each colour at its own address."""
        ...

    def address(self, colour: Colour, info: ContainerInfo) -> str | None:
        """Where the router reaches `colour` (None: it cannot, e.g. no published port)."""
        ...

    def running(self) -> bool:
        """The router process is up (a host's nginx is assumed up; its reload says otherwise)."""
        ...

    def ensure_running(self) -> bool:
        """Start (or replace, when router.image/listen/bind changed) the router; True if it was (re)started."""
        ...

    def nginx(self, *args: str) -> tuple[int, str]:
        """Run nginx with `args` against this router's config: (exit code, output)."""
        ...

    def probe_port(self) -> int:
        """A local port reaching the router's listener."""
        ...

    def remove(self) -> None:
        """Take this deployment out of the router entirely."""
        ...

    def colour_network(self) -> str | None:
        """The Docker network a colour's container joins (None: the host's default)."""
        ...

    def host_port(self, colour: Colour) -> int | None:
        """The fixed host port a new container of `colour` publishes (None: Docker picks one)."""
        ...

    def preflight(self) -> list[str]:
        """Why the router cannot take this deployment now (empty: it can)."""
        ...


class NginxBase:
    """Shared by both nginx kinds: rendering from the colours' labels and the nginx verbs."""

    kind = "nginx"

    def __init__(self, session: Session) -> None:
        self.session = session
        self.spec = session.loaded.spec
        self.layout = session.layout

    # -- rendering -----------------------------------------------------------------------------------------

    def _router_config(self, backends: tuple[Backend, ...]) -> RouterConfig:
        raise NotImplementedError

    def _render_text(self, cfg: RouterConfig) -> str:
        raise NotImplementedError

    def address(self, colour: Colour, info: ContainerInfo) -> str | None:
        raise NotImplementedError

    def render(self, weights: Mapping[Colour, int], colours: Mapping[Colour, ContainerInfo | None]) -> str:
        backends = []
        for colour, weight in weights.items():
            if weight <= 0:
                continue
            info = colours.get(colour)
            if info is None or not info.running:
                # The invariant's last line of defence: no config that names a colour that does not run.
                state = "has no container" if info is None else f"is {info.status}"
                raise DeployFailed(f"refusing to route to {colour}: its container {state}")
            address = self.address(colour, info)
            if address is None:
                raise DeployFailed(f"the {colour} container publishes no port; cannot route to it")
            backends.append(Backend(colour, address, weight))
        try:
            return self._render_text(self._router_config(tuple(backends)))
        except ValueError as exc:
            raise DeployFailed(f"the router config cannot be rendered: {exc}") from exc
