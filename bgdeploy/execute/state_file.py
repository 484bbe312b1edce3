"""The deployment's files on the host: state.json (what is live, a canary's position) and the history."""

from __future__ import annotations

from bgdeploy.execute.session import Session
from bgdeploy.plan.state import HostState, history_line


def read_state(session: Session) -> HostState:
    state, _ = HostState.from_json(session.layout.name, session.host.read_file(session.layout.state_file))
    return state


def record_state(session: Session, state: HostState) -> None:
    session.host.write_file(session.layout.state_file, state.to_json())


def append_history(session: Session, entry: dict[str, object]) -> None:
    path = session.layout.history_file
    existing = session.host.read_file(path) or b""
    # Keep the history bounded: the last 500 lines are plenty for `status` and audits.
    lines = existing.splitlines(keepends=True)[-499:]
    session.host.write_file(path, b"".join(lines) + history_line(entry))
