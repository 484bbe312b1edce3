"""The router: one interface (`Router`), one module per kind, chosen once by `router_for`.

Callers never test `router.mode`; adding a kind (kamal-proxy, Traefik) means one module here implementing
`Router`, one value of the spec's `router.mode`, and one line in `router_for`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bgdeploy.routers.base import Router

if TYPE_CHECKING:
    from bgdeploy.execute.session import Session

__all__ = ["Router", "router_for"]


def router_for(session: Session) -> Router:
    """The router of this deployment's kind (the one place that reads `router.mode`)."""
    from bgdeploy.routers.container import ContainerNginx
    from bgdeploy.routers.host import HostNginx

    kinds: dict[str, type[ContainerNginx] | type[HostNginx]] = {"container": ContainerNginx, "host": HostNginx}
    return kinds[session.loaded.spec.router.mode](session)
