"""A colour's container: start it, wait until the model is loaded, drain it, retire it."""

from __future__ import annotations

import math

from bgdeploy.errors import BgdeployError, DeployFailed, TransportError
from bgdeploy.execute.clock import poll
from bgdeploy.execute.lock import LockLost
from bgdeploy.execute.session import Session
from bgdeploy.plan import gpu
from bgdeploy.plan.container import colour_gpus, plan_container, secret_values
from bgdeploy.plan.metrics import gauge, parse
from bgdeploy.plan.names import Colour
from bgdeploy.plan.sockets import (
    nginx_worker_uids,
    parse_tcp,
    router_connections_in_container,
    router_connections_on_host,
)
from bgdeploy.spec.durations import format_duration
from bgdeploy.transports.docker_engine import ContainerInfo

PROGRESS_EVERY = 10.0
LOG_LINES = 30


class ContainerFailed(DeployFailed):
    """The new colour's container exited or restarted; carries its last log lines."""

    def __init__(self, message: str, logs: list[str]) -> None:
        super().__init__(message)
        self.logs = logs


def gpu_blockers(session: Session, colour: Colour) -> list[str]:
    """Read nvidia-smi on the host and say why `colour` cannot start on its GPUs (empty: it fits)."""
    spec = session.loaded.spec
    wanted = colour_gpus(spec, colour)
    if not wanted:
        return []
    done = session.host.run(gpu.query_argv(), timeout=30)
    if not done.ok:
        return [gpu.parse_failure(done.stdout + done.stderr, done.exit_code)]
    try:
        gpus = gpu.parse_query(done.stdout)
    except gpu.GpuQueryError as exc:
        return [str(exc)]
    session.result.gpu_lines = [gpu.format_gpu(g) for g in gpus]
    session.gpus_seen = gpus
    _, blockers = gpu.check_fit(gpus, wanted, spec.runtime.gpu_memory_utilization, colour=colour)
    return blockers


def start(session: Session, colour: Colour, spec_hash: str, deployed_at: str) -> ContainerInfo:
    spec = session.loaded.spec
    plan = plan_container(spec, session.layout, colour, spec_hash, deployed_at, session.router.host_port(colour))
    secrets = secret_values(spec, session.environ)
    network = session.router.colour_network()
    if network:
        session.engine.ensure_network(network)
    session.out.say(f"start: {plan.name} ({plan.image}) {' '.join(plan.command)}")
    return session.engine.run(plan, secrets, network)


def _failed(session: Session, name: str, info: ContainerInfo | None, what: str) -> ContainerFailed:
    logs = session.engine.logs(name, LOG_LINES)
    reason = "it was killed for lack of memory (OOM)" if info is not None and info.oom_killed else what
    tail = "\n".join(logs[-10:])
    return ContainerFailed(f"{name} failed while loading: {reason}. Last log lines:\n{tail}", logs)


def wait_ready(session: Session, colour: Colour) -> ContainerInfo:
    """Poll the health path until 200; fail at once when the container exits or restarts."""
    spec = session.loaded.spec
    name = session.layout.container(colour)
    info = session.engine.inspect(name, spec.runtime.port)
    if info is None or info.host_port is None:
        raise _failed(session, name, info, "its port was not published")
    client = session.client(session.host.reach(info.host_port), timeout=spec.health.timeout)
    last_said = [0.0]

    def check() -> ContainerInfo | None:
        current = session.engine.inspect(name, spec.runtime.port)
        if current is None:
            raise _failed(session, name, None, "its container disappeared")
        if current.status in ("exited", "dead") or current.restart_count > 0 or current.status == "restarting":
            raise _failed(session, name, current, f"the container {current.status} (exit code {current.exit_code})")
        probe = client.probe(spec.health.path, timeout=spec.health.timeout)
        return current if probe.state == "ready" else None

    def progress(elapsed: float) -> None:
        left = max(0, math.ceil(spec.health.ready_timeout - elapsed))  # whole seconds: the line ticks calmly
        live = f"wait-ready: {colour} loading, {format_duration(int(elapsed))} elapsed, {format_duration(left)} left"
        if session.out.progress(live + " of health.ready_timeout"):
            return
        if elapsed - last_said[0] >= PROGRESS_EVERY:
            last_said[0] = elapsed
            session.out.say(
                f"wait-ready: {colour} still loading, {format_duration(elapsed)} / "
                f"{format_duration(spec.health.ready_timeout)}"
            )

    try:
        ready = poll(
            check,
            timeout=spec.health.ready_timeout,
            interval=spec.health.interval,
            clock=session.clock,
            what=f"{name} was not ready ({spec.health.path} answering 200)",
            fix="raise health.ready_timeout if the model needs longer to load, or read the container's logs",
            on_wait=progress,
        )
    except DeployFailed as exc:
        if isinstance(exc, (ContainerFailed, LockLost)):  # a lost lock is not the container's fault
            raise
        logs = session.engine.logs(name, LOG_LINES)
        raise ContainerFailed(f"{exc}. Last log lines:\n" + "\n".join(logs[-10:]), logs) from None
    finally:
        client.close()
    session.out.say(f"wait-ready: {colour} is ready")
    return ready


def running_requests(session: Session, info: ContainerInfo) -> float | None:
    if info.host_port is None:
        return None
    with session.client(session.host.reach(info.host_port), timeout=5) as client:
        text = client.metrics()
    if text is None:
        return None
    return gauge(parse(text), "vllm:num_requests_running")


def router_requests(session: Session, colour: Colour, info: ContainerInfo) -> int | None:
    """Requests the router still has open to `colour`, from its open connections (plan/sockets.py), for servers
    without vLLM's metrics; None when they cannot be read."""
    spec = session.loaded.spec
    port = int(info.label("port")) if info.label("port").isdigit() else spec.runtime.port
    try:
        if session.router.colour_network() is not None:
            # The router reaches the colour over a Docker network: its connections are in the colour's netns.
            files = ["/proc/net/tcp", "/proc/net/tcp6", "/proc/net/route"]
            _, text = session.engine.exec(session.layout.container(colour), ["cat", *files])
            if not parse_tcp(text):  # no socket at all, not even the server's: nothing was read
                return None
            return router_connections_in_container(text, text, port)
        if info.host_port is None:
            return None
        tcp = session.host.run(["cat", "/proc/net/tcp", "/proc/net/tcp6"], timeout=15)
        uids = nginx_worker_uids(session.host.run(["ps", "-eo", "uid=,args="], timeout=15).stdout)
        if not uids or not parse_tcp(tcp.stdout):
            return None
        return router_connections_on_host(tcp.stdout, info.host_port, uids)
    except BgdeployError:
        return None


def drain(session: Session, colour: Colour) -> None:
    """Wait until the colour has no request in flight, or drain_timeout: vllm:num_requests_running when the
    server publishes it, else the requests the router still has open to it (a stream is never cut early)."""
    spec = session.loaded.spec
    info = session.engine.inspect(session.layout.container(colour), spec.runtime.port)
    if info is None or not info.running:
        return
    start = session.clock.now()
    while True:
        try:
            running = running_requests(session, info)
        except TransportError:
            running = None
        source = "vllm:num_requests_running"
        if running is None:
            open_requests = router_requests(session, colour, info)
            running = None if open_requests is None else float(open_requests)
            source = "requests open through the router"
        if running is None:
            session.out.say(
                f"drain: {colour} exposes no vllm:num_requests_running and the router's connections to it cannot "
                "be read; waiting is not possible"
            )
            return
        if running <= 0:
            session.out.say(f"drain: {colour} has no request in flight ({source})")
            return
        if session.clock.now() - start >= spec.rollout.drain_timeout:
            session.warn(
                f"{colour} still had {running:g} request(s) in flight ({source}) after the drain timeout "
                f"({format_duration(spec.rollout.drain_timeout)}); stopping it anyway"
            )
            return
        session.clock.sleep(0.5)


def retire(session: Session, colour: Colour) -> None:
    """Keep, stop or remove the old colour, per rollout.keep_previous."""
    spec = session.loaded.spec
    name = session.layout.container(colour)
    keep = spec.rollout.keep_previous
    if keep == "running":
        session.out.say(f"retire: {colour} kept running as a hot standby")
        return
    session.engine.stop(name, timeout=max(10.0, spec.rollout.drain_timeout))
    if keep == "removed":
        session.engine.remove(name)
    session.out.say(f"retire: {colour} {keep}")


def start_again(session: Session, colour: Colour) -> ContainerInfo | None:
    """Start a stopped colour and wait until it answers, to route back to it (a failed deploy or an abort whose
    old colour was stopped meanwhile, by hand or by a crash). None, with a warning, when it cannot serve: it
    is stopped again, and the caller must not route to it."""
    name = session.layout.container(colour)
    session.out.say(f"rollback: {colour} is not running; starting it again before sending traffic back")
    try:
        session.engine.start(name, session.loaded.spec.runtime.port)
        return wait_ready(session, colour)
    except (DeployFailed, TransportError) as exc:
        session.warn(f"{colour} could not be started again: {exc}")
        try:
            session.engine.stop(name, timeout=10)
        except TransportError as stop_error:
            session.warn(f"stopping {colour} again failed too: {stop_error}")
        return None
