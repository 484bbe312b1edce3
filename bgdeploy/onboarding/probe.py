"""What `bgdeploy init` reads on the host, over the connection pinned to the key the user confirmed."""

from __future__ import annotations

from bgdeploy.errors import BgdeployError
from bgdeploy.onboarding.starter import HostFacts
from bgdeploy.plan import gpu
from bgdeploy.transports.base import Host
from bgdeploy.transports.docker_engine import DockerEngine


def read_facts(host: Host, *, address: tuple[str, int, str], host_key: str, fingerprint: str) -> HostFacts:
    name, port, user = address
    found: tuple[gpu.Gpu, ...] = ()
    problem = ""
    done = host.run(gpu.query_argv(), timeout=30)
    if done.ok:
        try:
            found = tuple(gpu.parse_query(done.stdout))
        except gpu.GpuQueryError as exc:
            problem = str(exc)
    else:
        problem = gpu.parse_failure(done.stdout + done.stderr, done.exit_code)
    version, nvidia = "", False
    try:
        info = DockerEngine(host.docker()).info()
        version = str(info.get("ServerVersion", ""))
        nvidia = "nvidia" in (info.get("Runtimes") or {}) or any(
            "nvidia" in str(d) for d in info.get("CDISpecDirs") or []
        )
    except BgdeployError:
        pass  # reported as "Docker: not found" in the file's header
    return HostFacts(
        host=name,
        port=port,
        user=user,
        host_key=host_key,
        fingerprint=fingerprint,
        gpus=found,
        gpu_problem=problem,
        docker_version=version,
        nvidia_runtime=nvidia,
    )
