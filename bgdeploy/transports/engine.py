"""What the deploy cycle asks of a container engine: the seam between the cycle and Docker.

`DockerEngine` (transports/docker_engine.py) is the implementation; unit tests give the session a fake
(tests/fakes/engine.py) so that the cycle's steps and undo paths run without a Docker daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bgdeploy.plan.container import ContainerPlan
    from bgdeploy.transports.docker_engine import ContainerInfo


class Engine(Protocol):
    def inspect(self, name: str, port: int | None = None) -> ContainerInfo | None:
        """The container called `name` (None when there is none); `port`: the server port to find published."""
        ...

    def image_present(self, image: str) -> bool: ...

    def pull(self, image: str) -> None: ...

    def ensure_network(self, name: str) -> None: ...

    def managed_containers(self) -> list[ContainerInfo]:
        """Every container bgdeploy labelled, of any deployment."""
        ...

    def networks(self, prefix: str) -> list[str]: ...

    def remove_network(self, name: str) -> bool: ...

    def no_restart(self, name: str) -> None:
        """Stop Docker from restarting the container on its own (before it is stopped on purpose)."""
        ...

    def run(self, plan: ContainerPlan, secrets: Mapping[str, str], network: str | None) -> ContainerInfo: ...

    def start(self, name: str, port: int) -> ContainerInfo: ...

    def stop(self, name: str, timeout: float) -> None: ...

    def rename(self, name: str, new_name: str) -> None: ...

    def remove(self, name: str) -> None:
        """Remove the container, running or not; no error when it is already gone."""
        ...

    def logs(self, name: str, lines: int = 40) -> list[str]: ...

    def exec(self, name: str, argv: list[str]) -> tuple[int, str]: ...

    def run_router(
        self, name: str, image: str, network: str, publish: tuple[str, int], mount: str, labels: dict[str, str]
    ) -> ContainerInfo: ...

    def run_keeper(
        self, name: str, image: str, command: list[str], mount: tuple[str, str], labels: dict[str, str]
    ) -> ContainerInfo:
        """A helper container with one bind mount (HOST_PATH, CONTAINER_PATH) and no network, kept running."""
        ...
