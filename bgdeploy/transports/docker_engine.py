"""The host's Docker engine, through the docker SDK: the container operations a deploy needs.

docker-py exceptions stop here and come out as TransportError naming the container and the fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest, LogConfig
from paramiko import SSHException
from requests.exceptions import ReadTimeout, RequestException

from bgdeploy.errors import RemoteRefused, TransportError, TransportTimeout
from bgdeploy.plan.container import ContainerPlan
from bgdeploy.plan.names import LABEL_PREFIX
from bgdeploy.spec.images import digest_matches, is_image_ref, parse_image
from bgdeploy.untrusted.prompts import withhold_requests

ROUTER_PORT = 8080  # nginx's port inside the router container; published on router.bind:router.listen


@dataclass(frozen=True)
class ContainerInfo:
    """What a deploy needs to know of a container, read from `docker inspect`."""

    name: str
    id: str
    status: str  # created | running | restarting | exited | paused | dead
    exit_code: int
    restart_count: int
    labels: dict[str, str]
    host_port: int | None  # where the server port is published on the host's 127.0.0.1
    oom_killed: bool

    @property
    def running(self) -> bool:
        return self.status == "running"

    def label(self, key: str) -> str:
        return self.labels.get(f"{LABEL_PREFIX}{key}", "")


@contextlib.contextmanager
def _docker_errors(what: str) -> Iterator[None]:
    try:
        yield
    except NotFound as exc:
        raise RemoteRefused(f"{what}: not found ({exc.explanation})") from exc
    except (APIError, DockerException) as exc:
        detail = getattr(exc, "explanation", None) or str(exc)
        raise RemoteRefused(f"{what} failed: {detail}") from exc
    except (ReadTimeout, TimeoutError) as exc:
        raise TransportTimeout(f"{what} failed: the Docker engine did not answer in time ({exc})") from exc
    except (RequestException, SSHException, EOFError, OSError) as exc:
        # Over SSH, a dropped connection surfaces from docker-py as paramiko's or requests' own errors.
        raise TransportError(f"{what} failed: the Docker engine did not answer ({type(exc).__name__}: {exc})") from exc


class DockerEngine:
    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    def inspect(self, name: str, port: int | None = None) -> ContainerInfo | None:
        try:
            container = self.client.containers.get(name)
        except NotFound:
            return None
        except (APIError, DockerException, RequestException, SSHException, EOFError, OSError) as exc:
            raise TransportError(f"inspecting container {name} failed: {exc}") from exc
        return _info(container, port)

    def image_present(self, image: str) -> bool:
        """The image is on the host; for a reference pinned by digest, with exactly that digest (or ID)."""
        try:
            found = self.client.images.get(image)
        except ImageNotFound:
            return False
        except (APIError, DockerException, RequestException, SSHException, EOFError, OSError) as exc:
            raise TransportError(f"checking image {image} failed: {exc}") from exc
        if not is_image_ref(image):
            return True
        attrs: dict[str, Any] = found.attrs or {}
        return digest_matches(parse_image(image), str(attrs.get("Id") or ""), list(attrs.get("RepoDigests") or []))

    def pull(self, image: str) -> None:
        """Pull by tag, or by digest for REPO@sha256:... (Docker then guarantees the content)."""
        if not is_image_ref(image):
            raise TransportError(f"cannot pull {image!r}: not an image reference")
        ref = parse_image(image)
        if ref.is_id:
            raise TransportError(
                f"the image {image} is not on the host, and a local image ID cannot be pulled: load the image on "
                "the host (docker load) or give runtime.image as REPO@sha256:..."
            )
        repository, tag = ref.pull_args()
        with _docker_errors(f"pulling {image} (check the name and the host's registry access)"):
            self.client.images.pull(repository, tag=tag)
        if ref.digest is not None and not self.image_present(image):
            raise TransportError(f"pulled {image}, but the image on the host does not carry the digest {ref.digest}")

    def ensure_network(self, name: str) -> None:
        try:
            with _docker_errors(f"creating network {name}"):
                if not self.client.networks.list(names=[name]):
                    self.client.networks.create(name, driver="bridge", labels={f"{LABEL_PREFIX}managed": "true"})
        except TransportError as exc:
            if "address pool" in str(exc) or "non-overlapping" in str(exc):
                # Every deployment keeps a bridge network; Docker's default pools hold about 30 of them.
                raise TransportError(
                    f"creating network {name} failed: Docker has no free address pool left for another network "
                    "(each bgdeploy deployment keeps one bridge network, and Docker's default pools hold about 30). "
                    "Remove deployments you no longer use (`bgdeploy list` shows them, `bgdeploy remove` takes one "
                    "down), or widen `default-address-pools` in the host's /etc/docker/daemon.json and restart "
                    f"dockerd. Docker said: {exc}"
                ) from exc
            raise

    def info(self) -> dict[str, Any]:
        """`docker info`: the engine's version, runtimes (nvidia, once the NVIDIA Container Toolkit is set up)."""
        with _docker_errors("reading docker info"):
            found: dict[str, Any] = self.client.info()
        return found

    def managed_containers(self) -> list[ContainerInfo]:
        """Every container bgdeploy labelled, on this host, running or not."""
        # One listing call, no inspect per container: a container removed meanwhile is simply not listed.
        with _docker_errors("listing containers"):
            found: list[dict[str, Any]] = self.client.api.containers(all=True, filters={"label": f"{LABEL_PREFIX}name"})
        out = []
        for item in found:
            ports = [p.get("PublicPort") for p in item.get("Ports") or [] if p.get("PublicPort")]
            names = [str(n).lstrip("/") for n in item.get("Names") or []]
            out.append(
                ContainerInfo(
                    name=names[0] if names else str(item.get("Id", ""))[:12],
                    id=str(item.get("Id", "")),
                    status=str(item.get("State", "unknown")),
                    exit_code=0,
                    restart_count=0,
                    labels=dict(item.get("Labels") or {}),
                    host_port=int(ports[0]) if ports else None,
                    oom_killed=False,
                )
            )
        return out

    def networks(self, prefix: str) -> list[str]:
        """The names of the networks that start with `prefix`."""
        with _docker_errors("listing networks"):
            found: list[dict[str, Any]] = self.client.api.networks(names=[prefix])  # a substring filter
        return sorted(str(n.get("Name", "")) for n in found if str(n.get("Name", "")).startswith(prefix))

    def remove_network(self, name: str) -> bool:
        """Remove a network; False when there was none."""
        with _docker_errors(f"removing network {name} (a container outside bgdeploy may still use it)"):
            found = [n for n in self.client.networks.list(names=[name]) if n.name == name]
            for network in found:
                with contextlib.suppress(NotFound):
                    network.remove()
        return bool(found)

    def no_restart(self, name: str) -> None:
        """Turn off the restart policy, so a container that exits by itself stays down."""
        with _docker_errors(f"updating container {name}"), contextlib.suppress(NotFound):
            policy: Any = {"Name": "no"}  # the stubs know only "always" and "on-failure"; the API takes "no"
            self.client.containers.get(name).update(restart_policy=policy)

    def run(self, plan: ContainerPlan, secrets: Mapping[str, str], network: str | None) -> ContainerInfo:
        """Create and start the container (the secret values go to the engine only, never to a log)."""
        api = self.client.api  # the low-level API: the high-level one cannot set a container's stop timeout
        devices = [DeviceRequest(device_ids=[str(g) for g in plan.gpus], capabilities=[["gpu"]])] if plan.gpus else []
        with _docker_errors(f"starting container {plan.name} from {plan.image}"):
            host_config = api.create_host_config(
                device_requests=devices or None,
                binds=[v if v.count(":") == 2 else f"{v}:rw" for v in plan.volumes] or None,
                port_bindings={plan.port: ("127.0.0.1", plan.host_port)},
                restart_policy={"Name": "unless-stopped"},
                log_config=LogConfig(type="json-file", config={"max-size": "50m", "max-file": "3"}),
                shm_size=plan.shm_size,
                network_mode=network,
            )
            endpoints: Any = {network: api.create_endpoint_config()} if network else None
            networking = api.create_networking_config(endpoints) if network else None
            created = api.create_container(
                plan.image,
                command=list(plan.command),
                name=plan.name,
                environment={**plan.env, **secrets},
                labels=plan.labels,
                ports=[plan.port],
                host_config=host_config,
                networking_config=networking,
                stop_signal="SIGTERM",
                stop_timeout=plan.stop_timeout,
                detach=True,
            )
            api.start(created["Id"])
            container = self.client.containers.get(created["Id"])
        return _info(container, plan.port)

    def start(self, name: str, port: int) -> ContainerInfo:
        with _docker_errors(f"starting container {name}"):
            container = self.client.containers.get(name)
            container.start()
            container.reload()
        return _info(container, port)

    def stop(self, name: str, timeout: float) -> None:
        with _docker_errors(f"stopping container {name}"), contextlib.suppress(NotFound):
            self.client.containers.get(name).stop(timeout=int(timeout))

    def rename(self, name: str, new_name: str) -> None:
        with _docker_errors(f"renaming container {name} to {new_name}"):
            self.client.containers.get(name).rename(new_name)

    def remove(self, name: str) -> None:
        with _docker_errors(f"removing container {name}"), contextlib.suppress(NotFound):
            self.client.containers.get(name).remove(force=True)

    def logs(self, name: str, lines: int = 40) -> list[str]:
        """The last lines of a container's output; [] when there is none (never raises)."""
        try:
            raw = self.client.containers.get(name).logs(tail=lines)
        except (APIError, DockerException, RequestException, SSHException, EOFError, OSError):
            return []
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        # These lines end up in exceptions, reports and PR comments: a model server's request log lines carry
        # users' prompts (and replayed captured requests), so their content is withheld here, for every caller.
        return withhold_requests(text.splitlines()[-lines:])

    def exec(self, name: str, argv: list[str]) -> tuple[int, str]:
        with _docker_errors(f"running {argv[0]} in container {name}"):
            result = self.client.containers.get(name).exec_run(argv, stdout=True, stderr=True)
        output = result.output.decode(errors="replace") if isinstance(result.output, bytes) else str(result.output)
        return int(result.exit_code or 0), output

    def run_router(
        self, name: str, image: str, network: str, publish: tuple[str, int], mount: str, labels: dict[str, str]
    ) -> ContainerInfo:
        bind, port = publish
        with _docker_errors(f"starting the router container {name} from {image}"):
            kwargs: dict[str, Any] = {
                "command": ["nginx", "-c", "/etc/bgdeploy/nginx.conf", "-g", "daemon off;"],
                "name": name,
                "detach": True,
                "network": network,
                "ports": {f"{ROUTER_PORT}/tcp": (bind, port)},
                "volumes": {mount: {"bind": "/etc/bgdeploy", "mode": "rw"}},
                "labels": labels,
                "restart_policy": {"Name": "unless-stopped"},
            }
            container = self.client.containers.run(image, **kwargs)
            container.reload()
        return _info(container, None)

    def run_keeper(
        self, name: str, image: str, command: list[str], mount: tuple[str, str], labels: dict[str, str]
    ) -> ContainerInfo:
        """A small helper container (no network, one bind mount) that Docker keeps running across restarts."""
        source, target = mount
        with _docker_errors(f"starting the helper container {name} from {image}"):
            kwargs: dict[str, Any] = {
                # The command replaces the image's entrypoint (nginx's or the model server's).
                "entrypoint": command,
                "name": name,
                "detach": True,
                "network_mode": "none",
                "user": "0:0",
                "volumes": {source: {"bind": target, "mode": "rw"}},
                "labels": labels,
                "restart_policy": {"Name": "unless-stopped"},
            }
            container = self.client.containers.run(image, **kwargs)
            container.reload()
        return _info(container, None)


def _info(container: Container, port: int | None) -> ContainerInfo:
    attrs: dict[str, Any] = container.attrs or {}
    state = attrs.get("State") or {}
    labels = dict((attrs.get("Config") or {}).get("Labels") or {})
    # The port the container's own release listens on (its label) wins over the caller's (the current spec's).
    with contextlib.suppress(KeyError, ValueError):
        port = int(labels[f"{LABEL_PREFIX}port"])
    host_port: int | None = None
    bindings = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for key, entries in bindings.items():
        if entries and (port is None or key == f"{port}/tcp"):
            with contextlib.suppress(KeyError, ValueError, TypeError):
                host_port = int(entries[0]["HostPort"])
                break
    return ContainerInfo(
        name=(container.name or "").lstrip("/"),
        id=container.id or "",
        status=str(state.get("Status", "unknown")),
        exit_code=int(state.get("ExitCode") or 0),
        restart_count=int(attrs.get("RestartCount") or 0),
        labels=labels,
        host_port=host_port,
        oom_killed=bool(state.get("OOMKilled")),
    )
