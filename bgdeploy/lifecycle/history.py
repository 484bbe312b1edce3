"""`bgdeploy history`: a deployment's record on its host, newest last. Pure: entries in, lines out.

The deployment's own history.jsonl holds every deploy, rollback, promote and abort (the last 500); the
host's ~/.bgdeploy/history.jsonl holds removals, which outlive the deployment's state directory.
"""

from __future__ import annotations

from typing import Any

from bgdeploy.spec.durations import format_duration


def merge(own: list[dict[str, Any]], host: list[dict[str, Any]], name: str, limit: int) -> list[dict[str, Any]]:
    """The last `limit` entries of both histories, in time order (a removal's "started" line is left out:
    its outcome line follows it)."""
    removals = [e for e in host if e.get("name") == name and e.get("outcome") != "started"]
    seen = {(e.get("at"), e.get("command"), e.get("outcome")) for e in own}
    extra = [e for e in removals if (e.get("at"), e.get("command"), e.get("outcome")) not in seen]
    entries = sorted([*own, *extra], key=lambda e: str(e.get("at", "")))
    return entries[-limit:] if limit > 0 else []


def _release(value: Any) -> str:
    if not isinstance(value, dict):
        return "-"
    return f"{value.get('colour', '?')} {value.get('model', '?')}"


def render(entries: list[dict[str, Any]], name: str, host: str) -> str:
    if not entries:
        return f"{name} on {host}: no history"
    lines = [f"{name} on {host}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, newest last"]
    for e in entries:
        duration = e.get("duration_s")
        took = format_duration(float(duration)) if isinstance(duration, (int, float)) else "-"
        change = f"{_release(e.get('from'))} -> {_release(e.get('to'))}"
        if e.get("command") == "remove":
            change = "the deployment was taken off the host"
        lines.append(
            f"{e.get('at', '?')}  {e.get('command', '?')!s:<8} {e.get('outcome', '?')!s:<11} {took:>8}  "
            f"{change}  by {e.get('who', '?')}"
        )
        if e.get("failure"):
            lines.append(f"    failure: {e['failure']}")
    return "\n".join(lines)
