"""Which mode a run has, from the action's `mode` input and the event. Pure.

A pull request never decides to touch the host: `auto` on a pull request makes an offline plan (from GitHub,
no key needed); a live plan or a preview runs only when the workflow asks for it with `mode: plan` or
`mode: preview`, in a job behind its own protected environment. `validation.preview_on_pr` in the PR's spec
only asks, in the comment, for such a run.
"""

from __future__ import annotations

from dataclasses import dataclass

from bgdeploy.github.context import PULL_REQUEST_EVENTS
from bgdeploy.modes import Mode


@dataclass(frozen=True)
class Decision:
    mode: Mode
    why: str


def decide_mode(requested: Mode, event_name: str, ref: str, default_branch: str | None) -> Decision:
    """`auto`: an offline plan on pull requests, a deploy on a push to the default branch."""
    if requested != "auto":
        return Decision(requested, f"mode: {requested} was asked for by the workflow")
    if event_name in PULL_REQUEST_EVENTS:
        return Decision("offline-plan", "a pull request: validate, and plan against the last deployment (no host)")
    if event_name == "push":
        branch = ref.removeprefix("refs/heads/")
        if default_branch is None or branch == default_branch:
            return Decision("deploy", f"a push to {branch}")
        return Decision(
            "offline-plan", f"a push to {branch}, not the default branch {default_branch}: offline plan only"
        )
    if event_name == "workflow_dispatch":
        return Decision("plan", "workflow_dispatch without a mode input: plan only (set mode: deploy to deploy)")
    return Decision("validate", f"event {event_name}: validate only")
