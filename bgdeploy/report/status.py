"""`bgdeploy status` in words: what is live, the router, a canary, recent traffic, each colour, the last deploys."""

from __future__ import annotations

from typing import Any

from bgdeploy.report.live import traffic_line


def human_size(n: int) -> str:
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def capture_lines(capture: dict[str, Any] | None) -> list[str]:
    """validation.replay.capture: what the router holds (sizes and counts, never content) and its keeper."""
    if not capture:
        return []
    bound = f" of at most {human_size(capture['max_bytes'])}" if capture.get("max_bytes") is not None else ""
    state = "on" if capture["enabled"] else "off"
    lines = [
        f"capture: {state}, keeper {capture['keeper']}: {capture['requests']} request(s) held, "
        f"{human_size(capture['bytes_stored'])}{bound}"
    ]
    if capture["enabled"] and capture["keeper"] != "running":
        lines.append(
            f"warning: the capture keeper is {capture['keeper']}, so nothing bounds the capture file; "
            "the next deploy starts it again (or turn capture off)"
        )
    return lines


def render_status(data: dict[str, Any]) -> str:
    """`bgdeploy status` as text, from the data `execute.status.status` returns (the same as `--json`)."""
    lines = [f"{data['name']} on {data['host']}"]
    live = data["live"]
    if live is None:
        lines.append("live: nothing")
    else:
        lines.append(
            f"live: {live['colour']}: {live['model']} ({live['image']}), spec {live['spec_hash']}, "
            f"since {data['since'] or live['deployed_at']}"
        )
    weights = ", ".join(f"{c} {w}%" for c, w in data["router"]["weights"].items()) or "no config"
    lines.append(f"router ({data['router']['mode']}): {weights}")
    for problem in data["router"].get("problems", []):
        lines.append(f"ROUTER PROBLEM: {problem} (the next deploy, rollback, promote or abort repairs it first)")
    canary = data.get("canary")
    if canary:
        state = f"paused: {canary['paused']}" if canary["paused"] else "running"
        lines.append(
            f"canary: {canary['model']} on {canary['new']}, step {canary['step']}/{canary['steps']} at "
            f"{canary['weight']}%, {state}"
        )
    for colour, entry in data.get("traffic", {}).items():
        statuses = tuple((int(s), int(n)) for s, n in entry.get("error_statuses", {}).items())
        figures = traffic_line(
            colour, entry["requests"], entry["errors"], entry["error_rate"], entry["p95_latency_s"], statuses
        )
        lines.append(f"  recent traffic: {figures}")
    for colour, entry in data["colours"].items():
        if entry["container"] == "absent":
            lines.append(f"  {colour}: no container")
        else:
            lines.append(
                f"  {colour}: {entry['container']}, {entry['health']}: {entry['model']} ({entry['image']}), "
                f"deployed {entry['deployed_at']}"
            )
    lines += capture_lines(data.get("capture"))
    if data["history"]:
        lines.append("last deploys:")
        for item in reversed(data["history"]):
            target = item.get("to") or {}
            lines.append(
                f"  {item.get('at', '?')} {item.get('command', '?')} {item.get('outcome', '?')}: "
                f"{target.get('colour', '-')} {target.get('model', '')} by {item.get('who', '?')}"
            )
    lines += [f"warning: {w}" for w in data["warnings"]]
    return "\n".join(lines)
