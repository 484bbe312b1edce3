"""Only the routers (and the spec and host policy, which read router.mode as data) look at router.mode: every
other caller asks the Router interface, so a new router kind changes routers/ alone."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import yaml

from bgdeploy.plan.names import Layout
from bgdeploy.routers.container import ContainerNginx
from bgdeploy.routers.host import HostNginx
from bgdeploy.spec import parse_spec_text
from tests.unit.conftest import HOST_KEY

PACKAGE = Path(__file__).resolve().parents[2] / "bgdeploy"
ALLOWED = ("routers", "spec", "policy")
MODE_TEST = re.compile(r"router\.mode\s*(==|!=|\bin\b|\bnot in\b)|\.router\.mode\b(?!:)")


def test_no_caller_outside_the_routers_tests_router_mode() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if MODE_TEST.search(code) and '"""' not in code:
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert offenders == [], "ask session.router (bgdeploy/routers/) instead:\n" + "\n".join(offenders)


def _routers(mode: str, **router: object) -> tuple[object, object]:
    doc = {
        "version": 1,
        "name": "chat",
        "target": {"host": "gpu-1.example.com", "host_key": HOST_KEY},
        "model": {"name": "m"},
        "runtime": {"image": "vllm/vllm-openai:v0.9.2"},
        "router": {"mode": mode, **router},
    }
    loaded = parse_spec_text(yaml.safe_dump(doc), "bluegreen.yaml", environ={})
    session = SimpleNamespace(loaded=loaded, layout=Layout("chat", "/home/deploy"))
    return HostNginx(session), ContainerNginx(session)  # type: ignore[arg-type]


def test_the_host_include_and_the_router_image_come_from_the_router() -> None:
    host, container = _routers("host", config_path="/etc/nginx/bgdeploy.d/chat.conf")
    assert isinstance(host, HostNginx) and isinstance(container, ContainerNginx)
    assert host.host_include == "/etc/nginx/bgdeploy.d/chat.conf" and host.container_image is None
    assert container.host_include is None and container.container_image == container.spec.router.image
    default, _ = _routers("host")
    assert isinstance(default, HostNginx) and default.host_include == "/etc/nginx/conf.d/bgdeploy-chat.conf"
