"""Real GitHub webhook payloads, for ``GITHUB_EVENT_PATH`` in tests.

The payloads come from ``@octokit/webhooks-examples`` (installed by ``scripts/setup-node``):
``.cache/node/node_modules/@octokit/webhooks-examples/api.github.com/index.json``, a JSON list of
``{"name": EVENT, "actions": [...], "examples": [PAYLOAD, ...]}`` (``BGDEPLOY_WEBHOOK_EXAMPLES`` names another file).

The fields of an event that bgdeploy reads:

- ``pull_request`` (actions ``opened``, ``synchronize``, ``reopened``): ``pull_request.number`` (also top-level
  ``number``), ``pull_request.head.sha`` (the commit to plan; ``after`` on ``synchronize`` is the same),
  ``pull_request.head.repo.full_name`` against ``repository.full_name`` (a PR from a fork gets a read-only
  token), ``repository.full_name`` (owner/repo of the API calls).
- ``push``: ``ref`` (``refs/heads/main``), ``after`` (the pushed head commit; all zeros when a branch is deleted,
  ``deleted: true``), ``repository.full_name``.

In the examples the repository is ``Codertocat/Hello-World``, the pull request number 2, its head
``ec26c3e57ca3a959ca5aad62de7213c562f8c821``; a branch ``push`` goes to ``refs/heads/master`` with ``after``
``6113728f27ae82c7b1a177c8d03f9e96e0adf246``. Change fields on the returned copy as a test needs.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_ENV = "BGDEPLOY_WEBHOOK_EXAMPLES"
DEFAULT_EXAMPLES = REPO_ROOT / ".cache/node/node_modules/@octokit/webhooks-examples/api.github.com/index.json"


def examples_path() -> Path:
    return Path(os.environ.get(EXAMPLES_ENV) or DEFAULT_EXAMPLES)


def examples_available() -> bool:
    return examples_path().is_file()


@functools.cache
def _load(path: Path) -> dict[str, list[dict[str, Any]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run scripts/setup-node (or set {EXAMPLES_ENV})")
    with path.open("rb") as f:
        events = json.load(f)
    return {event["name"]: event["examples"] for event in events}


def event_names() -> list[str]:
    return sorted(_load(examples_path().resolve()))


def event_payload(name: str, action: str | None = None, *, index: int = 0) -> dict[str, Any]:
    """A deep copy of a real ``name`` webhook payload (the ``index``-th one with that ``action``, if given).

    For ``push`` the pushes of a branch that was not deleted come first (the package lists tag pushes first).
    """
    examples = _load(examples_path().resolve())
    if name not in examples:
        raise KeyError(f"no {name!r} event in {examples_path()}; known: {', '.join(sorted(examples))}")
    candidates = [e for e in examples[name] if action is None or e.get("action") == action]
    if name == "push":
        candidates.sort(key=lambda e: not (str(e.get("ref", "")).startswith("refs/heads/") and not e.get("deleted")))
    if not candidates:
        actions = sorted({str(e.get("action")) for e in examples[name]})
        raise KeyError(f"no {name!r} event with action {action!r}; known actions: {', '.join(actions)}")
    if not 0 <= index < len(candidates):
        raise IndexError(f"{len(candidates)} {name!r} examples with action {action!r}; index {index} is out of range")
    return copy.deepcopy(candidates[index])


def write_event(tmp_path: Path, payload: dict[str, Any], filename: str = "event.json") -> Path:
    """Writes ``payload`` as the runner does (JSON) and returns the path, for ``GITHUB_EVENT_PATH``."""
    path = Path(tmp_path) / filename
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path
