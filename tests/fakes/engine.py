"""A container engine made of a dict: containers by name, every call recorded in order. No Docker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from bgdeploy.errors import RemoteRefused
from bgdeploy.plan.container import ContainerPlan
from bgdeploy.plan.names import LABEL_PREFIX
from bgdeploy.transports.docker_engine import ContainerInfo
from bgdeploy.transports.engine import Engine


def container(name: str, *, status: str = "running", port: int | None = 8001, **labels: str) -> ContainerInfo:
    return ContainerInfo(
        name=name,
        id=f"id-{name}",
        status=status,
        exit_code=0,
        restart_count=0,
        labels={f"{LABEL_PREFIX}{k.replace('_', '-')}": v for k, v in labels.items()},
        host_port=port,
        oom_killed=False,
    )


class FakeEngine:
    def __init__(self, *containers: ContainerInfo) -> None:
        self.containers: dict[str, ContainerInfo] = {c.name: c for c in containers}
        self.calls: list[tuple[str, ...]] = []
        self.images: set[str] = set()

    def as_engine(self) -> Engine:
        return self

    def inspect(self, name: str, port: int | None = None) -> ContainerInfo | None:
        return self.containers.get(name)

    def image_present(self, image: str) -> bool:
        return image in self.images

    def pull(self, image: str) -> None:
        self.calls.append(("pull", image))
        self.images.add(image)

    def ensure_network(self, name: str) -> None:
        self.calls.append(("ensure_network", name))

    def managed_containers(self) -> list[ContainerInfo]:
        return list(self.containers.values())

    def networks(self, prefix: str) -> list[str]:
        return []

    def remove_network(self, name: str) -> bool:
        return False

    def no_restart(self, name: str) -> None:
        self.calls.append(("no_restart", name))

    def run(self, plan: ContainerPlan, secrets: Mapping[str, str], network: str | None) -> ContainerInfo:
        self.calls.append(("run", plan.name))
        info = container(plan.name)
        self.containers[plan.name] = info
        return info

    def start(self, name: str, port: int) -> ContainerInfo:
        self.calls.append(("start", name))
        if name not in self.containers:
            raise RemoteRefused(f"starting container {name}: not found")
        info = self.containers[name] = replace(self.containers[name], status="running")
        return info

    def stop(self, name: str, timeout: float) -> None:
        self.calls.append(("stop", name))
        if name in self.containers:
            self.containers[name] = replace(self.containers[name], status="exited")

    def rename(self, name: str, new_name: str) -> None:
        self.calls.append(("rename", name, new_name))
        if name not in self.containers:
            raise RemoteRefused(f"renaming container {name}: not found")
        self.containers[new_name] = replace(self.containers.pop(name), name=new_name)

    def remove(self, name: str) -> None:
        self.calls.append(("remove", name))
        self.containers.pop(name, None)

    def logs(self, name: str, lines: int = 40) -> list[str]:
        return []

    def exec(self, name: str, argv: list[str]) -> tuple[int, str]:
        self.calls.append(("exec", name, *argv))
        return 0, ""

    def run_router(
        self, name: str, image: str, network: str, publish: tuple[str, int], mount: str, labels: dict[str, str]
    ) -> ContainerInfo:
        self.calls.append(("run_router", name))
        info = container(name)
        self.containers[name] = info
        return info

    def run_keeper(
        self, name: str, image: str, command: list[str], mount: tuple[str, str], labels: dict[str, str]
    ) -> ContainerInfo:
        self.calls.append(("run_keeper", name))
        info = container(name)
        self.containers[name] = info
        return info
