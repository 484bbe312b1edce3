"""The capture files on the host and the keeper container that bounds them.

The router appends sampled bodies to `<state>/router/capture/capture.jsonl`. The keeper (a container next to
the router, restarted by Docker with it) cuts the file at half of `max_bytes` into one rotated part, so the
bound holds whether or not a bgdeploy command runs. Turning capture off removes the keeper and the files.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from bgdeploy.errors import DeployFailed
from bgdeploy.execute.session import Session
from bgdeploy.plan.capture import CAPTURE_FILE, ROTATED_FILE, keeper_command
from bgdeploy.plan.names import LABEL_PREFIX
from bgdeploy.spec.models import Capture, size_bytes

KEEPER_MOUNT = "/capture"
KEEPER_SETTLE_S = 1.0  # a keeper that cannot run exits at once


def capture_dir(session: Session) -> str:
    return posixpath.join(session.layout.router_dir, "capture")


def capture_files(session: Session) -> tuple[str, str]:
    directory = capture_dir(session)
    return posixpath.join(directory, CAPTURE_FILE), posixpath.join(directory, ROTATED_FILE)


def keeper_name(session: Session) -> str:
    return session.layout.capture_container


def capture_settings(session: Session) -> Capture | None:
    replay = session.loaded.spec.validation.replay
    return replay.capture if replay is not None else None


def keeper_image(session: Session) -> str:
    """An image already on the host with sh and coreutils: the router's in container mode, else the model's."""
    return session.router.container_image or session.loaded.spec.runtime.image


def _labels(session: Session, limit: int, image: str) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}name": session.loaded.spec.name,
        f"{LABEL_PREFIX}role": "capture",
        f"{LABEL_PREFIX}capture-max-bytes": str(limit),
        f"{LABEL_PREFIX}capture-image": image,
    }


# Created here, not by nginx (which would make it root's and world-readable). The directory is made 0700 even
# when it already existed (mkdir -p keeps an older, wider mode), since the replay writes its API key file there.
PREPARE = (
    'umask 077; mkdir -p "$1"; chmod 700 "$1"; [ -e "$1/capture.jsonl" ] || : > "$1/capture.jsonl"; '
    'chmod 600 "$1"/capture.*'
)


def ensure(session: Session) -> None:
    """With capture on: the files exist (0600, the SSH user's) before nginx opens them, and the keeper runs
    with the current bound. With capture off: no keeper and no captured data left behind."""
    capture = capture_settings(session)
    if capture is None:
        return
    directory = capture_dir(session)
    session.host.run(["sh", "-c", PREPARE, "sh", directory], timeout=30).raise_for_status("prepare the capture file")
    limit = size_bytes(capture.max_bytes)
    image = keeper_image(session)
    name = keeper_name(session)
    wanted = _labels(session, limit, image)
    engine = session.engine
    info = engine.inspect(name)
    if info is not None and info.running and all(info.labels.get(k) == v for k, v in wanted.items()):
        return
    if info is not None:
        engine.remove(name)
    session.out.say(f"capture: starting {name} (keeps the capture under {capture.max_bytes})")
    engine.run_keeper(name, image, keeper_command(limit), (directory, KEEPER_MOUNT), wanted)
    # Without a working keeper nothing bounds the capture: a keeper that exits (an image without sh or
    # coreutils) stops the deploy before the router captures anything.
    clock = session.clock
    deadline = clock.now() + KEEPER_SETTLE_S
    while clock.now() < deadline:
        info = engine.inspect(name)
        if info is None or not info.running or info.restart_count > 0:
            engine.remove(name)
            raise DeployFailed(
                f"the capture keeper {name} does not keep running in {image} (it needs sh, stat, tail and truncate); "
                "use an image that has them (router.image in container mode, runtime.image in host mode) or turn "
                "capture off"
            )
        clock.sleep(0.1)


def retire_if_off(session: Session) -> None:
    """Capture is off (and the router's config no longer captures): stop the keeper, delete the capture."""
    if capture_settings(session) is not None:
        return
    engine = session.engine
    name = keeper_name(session)
    had_keeper = engine.inspect(name) is not None
    if had_keeper:
        engine.remove(name)
    directory = capture_dir(session)
    if had_keeper or session.host.run(["test", "-d", directory], timeout=30).ok:
        session.host.run(["rm", "-rf", "--", directory], timeout=60).raise_for_status("delete the captured requests")
        session.out.say("capture: off; the keeper is stopped and the captured requests are deleted")


def purge_files(session: Session) -> None:
    """Empty the live file (nginx keeps it open) and delete the rotated part."""
    current, rotated = capture_files(session)
    script = '[ ! -e "$1" ] || : > "$1"; rm -f -- "$2"'
    session.host.run(["sh", "-c", script, "sh", current, rotated], timeout=30).raise_for_status(
        "delete the captured requests"
    )


@dataclass(frozen=True)
class CaptureStatus:
    """What is stored (sizes and counts only)."""

    enabled: bool
    directory: str
    bytes_stored: int
    max_bytes: int | None
    requests: int
    keeper: str  # running, stopped, absent

    def to_json(self) -> dict[str, object]:
        return dict(vars(self))


def status(session: Session) -> CaptureStatus:
    capture = capture_settings(session)
    current, rotated = capture_files(session)
    # Lines are counted on the host; nothing of their content crosses the connection.
    script = """for f in "$@"; do if [ -e "$f" ]; then stat -c %s "$f"; wc -l < "$f"; else echo 0; echo 0; fi; done"""
    done = session.host.run(["sh", "-c", script, "sh", current, rotated], timeout=30)
    numbers = [int(n) for n in done.stdout.split() if n.isdigit()] if done.ok else []
    while len(numbers) < 4:
        numbers.append(0)
    info = session.engine.inspect(keeper_name(session))
    keeper = "absent" if info is None else ("running" if info.running else info.status)
    return CaptureStatus(
        enabled=capture is not None,
        directory=capture_dir(session),
        bytes_stored=numbers[0] + numbers[2],
        max_bytes=size_bytes(capture.max_bytes) if capture is not None else None,
        requests=numbers[1] + numbers[3],
        keeper=keeper,
    )
