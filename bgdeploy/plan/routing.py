"""The routing invariant, and the pure judgements that keep it. Pure: no network, no sleeps.

THE GUARANTEE. The config nginx has *loaded* names only colours that run, on the address written for them
(each colour's own port, from its own release's labels), serving a release that passed validation.

How each path keeps it:
- A config is only ever rendered for colours whose containers run (`routers.base.NginxBase.render` refuses
  otherwise), at the address their labels give, and only after that colour passed validation (`switch` and
  the canary steps come after `validate`; `rollback` health-checks a stopped colour before routing to it).
- Every rendered config carries an id (`X-Bgdeploy-Config`, and `config=` in its first line). After a
  reload, the confirm asks through nginx until the new id and colour answer; when it does not, the previous
  config is put back and reloaded.
- Every command (deploy, also when unchanged; rollback; promote; abort; `status --repair`) first probes what
  nginx serves and judges it here (`judge_router`) against the containers and state.json: a router that
  answers with an id other than the file's (a runner killed between rename and reload), routes to a colour
  that does not run or is unhealthy, or reaches a colour at an address it no longer has, is repaired before
  anything else (`repair_weights` picks the target). `status` reports such a state and exits non-zero.
- Host mode publishes each colour on a fixed host port chosen free at its first start (`choose_host_port`)
  and recorded in its labels, so a restart of the container or of dockerd keeps the address nginx names.
- A failure after `retire` never routes back to a colour that was stopped or removed; a failed state write
  after a good switch is retried and reported, never a reason to revert a serving release.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bgdeploy.plan.names import COLOURS, Colour

_UPSTREAM_RE = re.compile(r"upstream bgdeploy_[a-z0-9_]+_(blue|green)\s*\{\s*server\s+(\S+)")
HOST_PORT_RANGE = (20000, 39999)


@dataclass(frozen=True)
class ColourFacts:
    """One colour as observed now."""

    running: bool
    healthy: bool  # its health path answers 200 on its own port
    address: str | None  # where the router must reach it now (None: not running or no port)


@dataclass(frozen=True)
class RouterFacts:
    """What the router holds and serves, as observed now."""

    file_weights: Mapping[Colour, int] | None  # what the config on disk routes (None: no bgdeploy config)
    file_id: str | None  # the id the config on disk names
    file_addresses: Mapping[Colour, str]  # each routed colour's upstream address in that file
    answered: bool  # nginx answered a probe through the listener
    loaded_id: str | None  # the X-Bgdeploy-Config it answered with
    deployment: str | None  # the X-Bgdeploy-Deployment it answered with
    current: bool = True  # the router runs with the spec's settings (router.image, listen, bind)
    failing: int = 0  # probes through the router answered by nginx with an error (502: it cannot reach a colour)


@dataclass(frozen=True)
class RouterJudgement:
    problems: tuple[str, ...] = ()
    repair: dict[Colour, int] | None = None  # the weights to apply now (None: nothing to do, or nothing can be)
    stranded: bool = False  # something should serve but no colour runs healthy: nothing to route to
    conflict: str = ""  # another deployment answers on this listener: a re-render cannot fix that

    @property
    def ok(self) -> bool:
        return not self.problems


def upstream_addresses(text: str) -> dict[Colour, str]:
    """Each colour's upstream address in a rendered config."""
    found: dict[Colour, str] = {}
    for match in _UPSTREAM_RE.finditer(text):
        colour: Colour = "blue" if match.group(1) == "blue" else "green"
        found[colour] = match.group(2).rstrip(";")
    return found


def repair_weights(
    routed: Mapping[Colour, int], colours: Mapping[Colour, ColourFacts], preferred: tuple[Colour | None, ...]
) -> dict[Colour, int] | None:
    """Where traffic should go when some of `routed` cannot take it: the routed colours that are alive keep
    their shares (a lone survivor takes 100%); when none is, the first alive colour of `preferred` (the live
    release recorded in state.json, then the previous one), then any alive colour; None when none is alive."""
    alive = {c for c in COLOURS if colours[c].running and colours[c].healthy and colours[c].address}
    kept = {c: w for c, w in routed.items() if w > 0 and c in alive}
    if len(kept) == 1:
        return {next(iter(kept)): 100}
    if kept:
        return dict(kept)
    for colour in (*preferred, *COLOURS):
        if colour is not None and colour in alive:
            return {colour: 100}
    return None


def judge_router(
    name: str,
    router: RouterFacts,
    colours: Mapping[Colour, ColourFacts],
    *,
    live: Colour | None,
    previous: Colour | None,
    render_id: Callable[[Mapping[Colour, int]], str | None] | None = None,
) -> RouterJudgement:
    """Does what nginx serves keep the guarantee? If not, what to route to instead.

    `live` / `previous`: state.json's colours (used only to pick a target when the router names none alive).
    `render_id`: the id the config for given weights would have if rendered now (router settings and
    addresses as they are now); a difference from the file's id means the config is out of date.
    """
    problems: list[str] = []
    routed = {c: w for c, w in (router.file_weights or {}).items() if w > 0}
    if not routed:
        if live is not None:
            problems.append(f"state.json says {live} is live but no router config routes to it")
            target = repair_weights({}, colours, (live, previous))
            return RouterJudgement(tuple(problems), target, stranded=target is None)
        return RouterJudgement()
    for colour in routed:
        facts = colours[colour]
        if not facts.running:
            problems.append(f"the router sends traffic to {colour}, whose container is not running")
        elif not facts.healthy:
            problems.append(f"the router sends traffic to {colour}, which does not answer its health check")
        elif facts.address != router.file_addresses.get(colour):
            problems.append(
                f"the router reaches {colour} at {router.file_addresses.get(colour)}, but it listens at {facts.address}"
            )
    if not router.current:
        problems.append(
            "the router is not running with the spec's settings (stopped, or router.image, listen or bind changed)"
        )
    if not router.answered:
        problems.append("the router does not answer on its listener")
    elif router.deployment is not None and router.deployment != name:
        conflict = (
            f"deployment {router.deployment} answers on this deployment's router.listen: two deployments claim "
            "one port; give one of them another router.listen"
        )
        return RouterJudgement((*problems, conflict), None, conflict=conflict)
    elif router.loaded_id != router.file_id:
        problems.append(
            f"nginx serves config {router.loaded_id or 'without an id'}, not the one on disk ({router.file_id}): "
            "a run was interrupted between writing the config and reloading nginx"
        )
    if not problems and router.answered and router.failing:
        # nginx resolves a container name when it loads its config: a colour that came back at another
        # address (restarted after another container took its old one) is healthy on its own port while
        # every request through nginx fails. A reload re-resolves it.
        problems.append(
            f"nginx answers {router.failing} of its probes with an error although "
            f"{' and '.join(sorted(routed))} answer{'s' if len(routed) == 1 else ''} the health check directly: it "
            "reaches them at a stale address (a container restarted at another address); reloading it"
        )
    target = repair_weights(routed, colours, (live, previous))
    if target is None:
        return RouterJudgement(tuple(problems), None, stranded=True)
    if not problems and render_id is not None and render_id(target) != router.file_id:
        problems.append("the router config is out of date (router settings or addresses changed): re-rendering it")
    return RouterJudgement(tuple(problems), target if problems else None)


def listening_ports(ss_output: str) -> set[int]:
    """Every TCP port something listens on, from `ss -Hltn`."""
    ports: set[int] = set()
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            port = fields[3].rpartition(":")[2]
            if port.isdigit():
                ports.add(int(port))
    return ports


def choose_host_port(name: str, colour: Colour, busy: set[int], tries: int = 500) -> int:
    """A free host port for `colour` of deployment `name`: the same one for the same name and colour whenever
    it is free (a hash picks where to start), else the next free one. ValueError when none is free."""
    low, high = HOST_PORT_RANGE
    span = high - low + 1
    start = int(hashlib.sha256(f"{name}/{colour}".encode()).hexdigest(), 16) % span
    for step in range(min(tries, span)):
        port = low + (start + step) % span
        if port not in busy:
            return port
    raise ValueError(f"no free host port for {name}/{colour} among {tries} tried in {low}-{high}")


@dataclass
class ProbeTally:
    """What several probes through the router saw (a split config answers with several colours)."""

    answered: int = 0
    ids: set[str] = field(default_factory=set)
    deployments: set[str] = field(default_factory=set)
    colours: set[str] = field(default_factory=set)
    failing: int = 0  # answers that were not 200

    def add(self, headers: Mapping[str, str], *, ready: bool = True) -> None:
        self.answered += 1
        if not ready:
            self.failing += 1
        if headers.get("x-bgdeploy-config"):
            self.ids.add(headers["x-bgdeploy-config"])
        if headers.get("x-bgdeploy-deployment"):
            self.deployments.add(headers["x-bgdeploy-deployment"])
        if headers.get("x-bgdeploy-colour"):
            self.colours.add(headers["x-bgdeploy-colour"])

    def loaded_id(self) -> str | None:
        return next(iter(self.ids)) if len(self.ids) == 1 else None

    def deployment(self, own: str) -> str | None:
        others = sorted(self.deployments - {own})
        return others[0] if others else (own if own in self.deployments else None)
