"""Names and paths bgdeploy uses on the host, derived from the deployment name. Pure."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Literal

Colour = Literal["blue", "green"]
COLOURS: tuple[Colour, Colour] = ("blue", "green")
LABEL_PREFIX = "dev.bgdeploy."


def other(colour: Colour) -> Colour:
    return "green" if colour == "blue" else "blue"


@dataclass(frozen=True)
class Layout:
    """Where things live for one deployment `name` on the host."""

    name: str
    home: str

    @property
    def state_dir(self) -> str:
        return posixpath.join(self.home, ".bgdeploy", self.name)

    @property
    def state_file(self) -> str:
        return posixpath.join(self.state_dir, "state.json")

    @property
    def history_file(self) -> str:
        return posixpath.join(self.state_dir, "history.jsonl")

    @property
    def lock_file(self) -> str:
        return posixpath.join(self.state_dir, "lock")

    @property
    def router_dir(self) -> str:
        return posixpath.join(self.state_dir, "router")

    @property
    def router_logs(self) -> str:
        return posixpath.join(self.router_dir, "logs")

    def container(self, colour: Colour) -> str:
        return f"bgdeploy-{self.name}-{colour}"

    def set_aside(self, colour: Colour) -> str:
        """Where the previous release of `colour` waits while a deploy reuses its name."""
        return f"bgdeploy-{self.name}-{colour}-previous"

    @property
    def router_container(self) -> str:
        return f"bgdeploy-{self.name}-router"

    @property
    def capture_container(self) -> str:
        """The keeper that bounds the router's captured requests (validation.replay.capture)."""
        return f"bgdeploy-{self.name}-capture"

    @property
    def network(self) -> str:
        return f"bgdeploy-{self.name}"

    def host_include(self) -> str:
        """The one include file bgdeploy owns in the host's nginx (router.mode: host)."""
        return f"/etc/nginx/conf.d/bgdeploy-{self.name}.conf"
