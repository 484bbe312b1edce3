"""Replay captured live requests against green and the live colour at the same time, on the host.

The host runs a short-lived `python3` (standard library only) that reads the capture files, picks the
sample (seeded, de-duplicated), sends each request to both colours at once and prints one JSON line of
aggregates: counts, errors, latencies, agreement and the positions of disagreements. Bodies and answers
never cross the connection, so no report, log or --json can hold them.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from bgdeploy.capture import keeper
from bgdeploy.errors import DeployFailed
from bgdeploy.execute.session import Session
from bgdeploy.plan import capture as plan_capture
from bgdeploy.plan.capture import ColourReplay, ReplayResult, judge

# Runs on the host after plan/capture.py's own source (so sampling and normalising are the same code).
_MAIN = r"""

def _replay_main(settings):
    import concurrent.futures
    import time
    import urllib.error
    import urllib.request

    key = None
    if settings.get("key_file"):
        with open(settings["key_file"]) as handle:
            key = handle.read().strip()
    def lines():
        # One line at a time, split on "\n" only (what nginx ends a record with): the capture may be large.
        for path in settings["files"]:
            try:
                with open(path, "rb") as handle:
                    for raw in handle:
                        yield raw.decode("utf-8", errors="replace")
            except OSError:
                pass

    available, chosen = sample(iter_captured_bodies(lines()), settings["count"], settings["seed"])

    def ask(base, body):
        path = body.get("__path") or ("/v1/chat/completions" if "messages" in body else "/v1/completions")
        data = json.dumps(for_replay(body, settings["max_tokens"])).encode()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = "Bearer " + key
        request = urllib.request.Request(base + path, data=data, headers=headers, method="POST")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=settings["timeout"]) as response:
                answer = json.loads(response.read())
            choice = (answer.get("choices") or [{}])[0]
            message = choice.get("message") or {}
            text = message.get("content") if "message" in choice else choice.get("text")
            calls = message.get("tool_calls") or []
            called = [(c.get("function") or {}).get("name") for c in calls]
            return True, time.monotonic() - started, (normalise(text or ""), json.dumps(called)), False
        except urllib.error.HTTPError as exc:  # the status only: the message could quote the request
            return False, time.monotonic() - started, None, 400 <= exc.code < 500
        except Exception:  # every other failure counts the same; its message could quote the request, so it is dropped
            return False, time.monotonic() - started, None, False

    figures = {"green": [0, 0, []], "live": [0, 0, []]}
    compared = agreed = refused = 0
    differ = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * settings["concurrency"]) as pool:
        pairs = [(pool.submit(ask, settings["green"], b), pool.submit(ask, settings["live"], b)) for b in chosen]
        for position, (green, live) in enumerate(pairs, start=1):
            answers = {}
            done = {"green": green.result(), "live": live.result()}
            if done["green"][3] and done["live"][3]:
                # Both colours refuse it (4xx): the request is at fault, not green (anyone can send such requests
                # to the live endpoint, and they would otherwise count against every green).
                refused += 1
                continue
            for colour, (ok, seconds, answer, _) in done.items():
                figures[colour][0] += 1
                figures[colour][1] += 0 if ok else 1
                if ok:
                    figures[colour][2].append(seconds)
                answers[colour] = answer
            if answers["green"] is not None and answers["live"] is not None:
                compared += 1
                if answers["green"] == answers["live"]:
                    agreed += 1
                else:
                    differ.append(position)
    out = {"available": available, "compared": compared, "agreed": agreed, "disagreements": differ}
    out["refused_by_both"] = refused
    for colour, (requests, errors, latencies) in figures.items():
        out[colour] = {"requests": requests, "errors": errors, "latency_p95_s": p95(latencies)}
    return out


if __name__ == "__main__":
    import sys

    try:
        print(json.dumps(_replay_main(json.loads(sys.argv[1]))))
    except Exception as exc:  # the type only: a message could quote captured content
        print(json.dumps({"error": type(exc).__name__}))
"""


def host_script() -> str:
    return Path(plan_capture.__file__).read_text() + _MAIN


def replay(session: Session, green_port: int, live_port: int) -> ReplayResult:
    """Run the replay on the host against the colours' host ports; the judged aggregates."""
    spec = session.loaded.spec
    settings = spec.validation.replay
    assert settings is not None
    current, rotated = keeper.capture_files(session)
    key_file = None
    api_key = session.environ.get(spec.runtime.api_key_env) if spec.runtime.api_key_env else None
    if api_key:
        # The key reaches the host's script through a file, never its argv (visible in `ps`). The file is written
        # with the host's umask (0644 over SFTP), so the directory is made private first (mkdir only makes it
        # 0700 when it creates it), and the file 0600 after.
        directory = keeper.capture_dir(session)
        session.host.run(
            ["sh", "-c", 'umask 077 && mkdir -p "$1" && chmod 700 "$1"', "sh", directory], timeout=30
        ).raise_for_status("make the capture directory private")
        key_file = f"{directory}/.replay-key-{secrets.token_hex(8)}"
        session.host.write_file(key_file, api_key.encode())
        session.host.run(["chmod", "600", "--", key_file], timeout=30)
    args = {
        "files": [rotated, current],
        "count": settings.requests,
        "seed": settings.seed,
        "max_tokens": settings.max_tokens,
        "concurrency": settings.concurrency,
        "timeout": settings.timeout,
        "green": f"http://127.0.0.1:{green_port}",
        "live": f"http://127.0.0.1:{live_port}",
        "key_file": key_file,
    }
    budget = settings.timeout * (settings.requests / settings.concurrency + 2) + 60
    try:
        done = session.host.run(["python3", "-c", host_script(), json.dumps(args)], timeout=budget)
    finally:
        if key_file is not None:
            session.host.remove(key_file)
    try:
        raw = json.loads(done.stdout.strip().splitlines()[-1]) if done.ok and done.stdout.strip() else None
    except ValueError:
        raw = None
    if not isinstance(raw, dict) or "error" in raw or "green" not in raw:
        why = raw.get("error") if isinstance(raw, dict) else f"exit {done.exit_code}"
        # Only the exit status or the error's type: the script's output never holds content, but stay safe.
        raise DeployFailed(f"the replay of captured requests did not run on the host ({why}); is python3 installed?")
    result = ReplayResult(
        available=int(raw["available"]),
        green=ColourReplay(**raw["green"]),
        live=ColourReplay(**raw["live"]),
        compared=int(raw["compared"]),
        agreed=int(raw["agreed"]),
        disagreements=tuple(int(n) for n in raw["disagreements"]),
        refused_by_both=int(raw.get("refused_by_both", 0)),
    )
    gates = spec.validation.thresholds.replay
    return judge(result, gates.max_error_rate, gates.max_latency_p95_vs_live, gates.min_agreement)


def validate_with_replay(session: Session, new: str, green_port: int | None, live_port: int | None) -> None:
    """The validation step's replay: judged against thresholds.replay; DeployFailed when a gate fails."""
    settings = session.loaded.spec.validation.replay
    if settings is None or settings.capture is None:
        return
    if session.result.command == "preview":
        # A preview runs a pull request's image, which has the network: live users' requests are not handed to it.
        session.warn("replay skipped: a preview runs a pull request's image; captured live requests never reach it")
        return
    if green_port is None or live_port is None:
        session.warn("replay skipped: nothing is live to compare with (the capture starts with this deploy)")
        return
    found = replay(session, green_port, live_port)
    if found.available == 0:
        session.warn("replay skipped: no request has been captured yet")
        return
    session.result.replay = found
    line = plan_capture.describe(found)
    session.out.say(f"replay: {new}: {line}")
    if not found.passed:
        raise DeployFailed(f"{new} failed the replay of captured live requests: {line}")
