"""Which release is live, decided from the facts: state.json, the router's weights and the running colours. Pure.

The three can disagree after an interrupted run. The router decides (it is what clients reach); state.json
only adds the exact deploy time when it agrees. Every disagreement comes back as a warning.
"""

from __future__ import annotations

from collections.abc import Mapping

from bgdeploy.plan.names import Colour
from bgdeploy.plan.state import HostState, Release


def decide_live(
    state: HostState, running: Mapping[Colour, Release | None], weights: Mapping[Colour, int] | None
) -> tuple[Release | None, list[str]]:
    """The live release and the warnings. `running`: the release each colour's container holds while it runs
    (None: no container, or not running); `weights`: the router's weights (None: no bgdeploy config)."""
    warnings: list[str] = []
    routed: Colour | None = None
    for colour, weight in (weights or {}).items():
        if routed is None or weight > (weights or {})[routed]:
            routed = colour
    live: Release | None = None
    if routed is not None:
        live = running.get(routed)
        if live is None:
            warnings.append(f"the router points at {routed}, whose container is not running: nothing serves now")
        elif state.live is not None and state.live.colour != routed:
            warnings.append(
                f"state.json says {state.live.colour} is live but the router sends traffic to {routed}; "
                f"trusting the router (a previous deploy was interrupted)"
            )
    elif state.live is not None:
        if running.get(state.live.colour) is not None:
            warnings.append(f"state.json says {state.live.colour} is live but no router config routes to it")
        else:
            warnings.append(f"state.json says {state.live.colour} is live but its container is not running")

    if live is not None and state.live is not None and state.live.colour == live.colour:
        live = state.live  # the recorded release has the exact deploy time; labels agree on the rest
    return live, warnings
