"""Red-team (RT12) of capture and replay: hostile captured bodies, paths and names."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bgdeploy.capture.replay import host_script, replay, validate_with_replay
from bgdeploy.errors import DeployFailed
from bgdeploy.plan.capture import captured_bodies
from bgdeploy.plan.nginx import Backend, RouterConfig, render_full_conf
from bgdeploy.transports.base import CommandResult
from bgdeploy.transports.docker_engine import DockerEngine
from tests.fakes.host import FakeHost
from tests.fakes.session import SPEC, fake_session
from tests.unit.conftest import MINIMAL, problems


def line(body: str, path: str = "/v1/completions") -> str:
    return json.dumps({"ts": "1.0", "path": path, "body": body})


DEEP = '{"prompt": ' + "[" * 5000 + "]" * 5000 + "}"
# Parses (below the recursion limit), but deeper than any real request.
NEARLY = '{"messages": [{"role": "user", "content": ' + "[" * 900 + "]" * 900 + "}]}"


def test_a_deeply_nested_captured_body_is_skipped_not_fatal() -> None:
    good = line('{"prompt": "hello"}')
    bodies = captured_bodies([line(DEEP), line(NEARLY), good, line('{"prompt": 1, "n": ' + "9" * 5000 + "}")])
    assert bodies == [{"prompt": "hello", "__path": "/v1/completions"}]


def test_the_host_script_replays_around_a_json_bomb_and_prints_no_content(tmp_path: Path) -> None:
    # One user sending `[[[[...` to the live endpoint must not stop every later deploy's replay.
    capture = tmp_path / "capture.jsonl"
    secret = "RT12-SECRET-PROMPT"
    capture.write_text("\n".join([line(DEEP), line(json.dumps({"prompt": secret})), line(NEARLY)]) + "\n")
    closed = socket.socket()  # bound, never listening: every request is refused at once
    closed.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{closed.getsockname()[1]}"
    args = {
        "files": [str(capture) + ".1", str(capture)],
        "count": 10,
        "seed": 1,
        "max_tokens": 8,
        "concurrency": 2,
        "timeout": 5,
        "green": base,
        "live": base,
        "key_file": None,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", host_script(), json.dumps(args)], capture_output=True, text=True, timeout=120
        )
    finally:
        closed.close()
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in out, out
    assert out["available"] == 1 and out["green"] == {"requests": 1, "errors": 1, "latency_p95_s": None}
    assert secret not in done.stdout + done.stderr


# --- capture paths: what validates must render and load in nginx ------------------------------------------

CAPTURE_SPEC = MINIMAL + "{health}validation:\n  replay: {{capture: {{paths: {paths}}}}}\n"


@pytest.mark.parametrize(
    ("health", "paths", "message"),
    [
        ("", "[/v1/chat/completions, /v1/chat/completions]", "paths[1]: /v1/chat/completions is listed twice"),
        ("health: {path: /v1/models}\n", "[/v1/models]", "paths[0]: /v1/models is also health.path"),
        ("health: {path: '/v1/models?ready=1'}\n", "[/v1/models]", "paths[0]: /v1/models is also health.path"),
        ("", "[/v1/../../etc/x]", "paths[0]: /v1/../../etc/x has a `.` or `..` segment"),
        ("", "[/v1//chat]", "paths[0]: /v1//chat has a `.` or `..` segment or `//`"),
    ],
    ids=["twice", "health", "health-query", "dotdot", "double-slash"],
)
def test_a_capture_path_nginx_would_refuse_or_never_match_is_a_spec_error(
    health: str, paths: str, message: str
) -> None:
    found = "\n".join(problems(CAPTURE_SPEC.format(health=health, paths=paths)))
    assert f"validation.replay.capture.{message}" in found, found


@pytest.mark.parametrize(
    ("paths", "health"), [(("/v1/completions", "/v1/completions"), "/health"), (("/v1/models",), "/v1/models?x=1")]
)
def test_the_renderer_refuses_a_duplicate_location(paths: tuple[str, ...], health: str) -> None:
    cfg = RouterConfig(
        "cap-unit",
        18081,
        "127.0.0.1",
        60,
        (Backend("blue", "127.0.0.1:18001", 100),),
        "/tmp/cap-unit/access.log",
        health_path=health,
        capture_log="/tmp/cap-unit/capture.jsonl",
        capture_paths=paths,
        capture_sample=0.5,
    )
    with pytest.raises(ValueError, match="repeat a path or the health path"):
        render_full_conf(cfg)


# --- a colour's log lines quoted in errors and reports ----------------------------------------------------

VLLM_0_9_LINE = (
    "INFO 07-10 12:00:00 [logger.py:43] Received request chatcmpl-abc123: prompt: '<|user|>\\nRT12-SECRET', "
    "params: SamplingParams(n=1, stop=['RT12-STOP']), prompt_token_ids: [1, 2], lora_request: None."
)


class _Container:
    def logs(self, tail: int) -> bytes:
        lines = [
            VLLM_0_9_LINE,
            "DEBUG 10-13 [logger.py:50] Request cmpl-1 details: prompt: 'RT12-SECRET', prompt_token_ids: [1]",
            "INFO 10-13 [logger.py:70] Generated response chatcmpl-1: output: 'RT12-SECRET answer'",
            'INFO:     127.0.0.1:5555 - "POST /v1/chat/completions HTTP/1.1" 200 OK',
            "torch.OutOfMemoryError: CUDA out of memory.",
        ]
        return "\n".join(lines).encode()


class _Containers:
    def get(self, name: str) -> _Container:
        return _Container()


class _Client:
    containers = _Containers()


def test_a_colours_log_lines_never_carry_a_logged_prompt_or_answer() -> None:
    # vLLM <= 0.10.1 logs every prompt at INFO by default; a replayed captured request is one of them, and a
    # failed colour's last lines go into the exception, the report and the PR comment.
    lines = DockerEngine(_Client()).logs("bgdeploy-chat-green")  # type: ignore[arg-type]
    text = "\n".join(lines)
    assert "RT12-SECRET" not in text and "RT12-STOP" not in text, text
    assert lines[0] == (
        "INFO 07-10 12:00:00 [logger.py:43] Received request chatcmpl-abc123: [request content withheld by bgdeploy]"
    )
    assert lines[3:] == [
        'INFO:     127.0.0.1:5555 - "POST /v1/chat/completions HTTP/1.1" 200 OK',
        "torch.OutOfMemoryError: CUDA out of memory.",
    ]


def _replay_peak_mib(capture: Path) -> tuple[dict[str, object], int]:
    """The host script's answer and its peak RSS (MiB) over `capture`, against a port that refuses at once."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{closed.getsockname()[1]}"
    args = {"files": [str(capture)], "count": 5, "seed": 1, "max_tokens": 8, "concurrency": 1, "timeout": 5}
    args |= {"green": base, "live": base, "key_file": None}
    measured = (
        "import resource, sys\n"
        "exec(compile(sys.stdin.read(), '<replay>', 'exec'), {'__name__': '__main__'})\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", measured, json.dumps(args)],
            input=host_script(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        closed.close()
    return json.loads(done.stdout.strip().splitlines()[-1]), int(done.stderr.strip().splitlines()[-1])


def test_the_replay_reads_a_large_capture_in_bounded_memory(tmp_path: Path) -> None:
    # max_bytes has no upper bound and the replay runs next to a loaded model: it must not hold the capture
    # (it held the file twice over plus every parsed body: ~4x the capture in RAM on the GPU host).
    empty, capture = tmp_path / "empty.jsonl", tmp_path / "capture.jsonl"
    empty.write_text("")
    with capture.open("w") as handle:
        for i in range(64 * 1024):  # 64 MiB of captured chat requests, all distinct
            body = json.dumps({"messages": [{"role": "user", "content": f"{i:08d}" + "x" * 900}]})
            handle.write(line(body, "/v1/chat/completions") + "\n")
    _, baseline = _replay_peak_mib(empty)
    out, peak = _replay_peak_mib(capture)
    assert out["available"] == 64 * 1024 and out["green"] == {"requests": 5, "errors": 5, "latency_p95_s": None}
    assert peak - baseline < 24, f"the replay held {peak - baseline} MiB more reading a 64 MiB capture"


def test_a_body_with_a_unicode_line_separator_is_replayed(tmp_path: Path) -> None:
    # nginx's escape=json leaves U+2028 as is; str.splitlines() cut such a record in two and it was never replayed.
    capture = tmp_path / "capture.jsonl"
    body = json.dumps({"prompt": "first\u2028second"}, ensure_ascii=False)
    capture.write_text(json.dumps({"ts": "1", "path": "/v1/completions", "body": body}, ensure_ascii=False) + "\n")
    out, _ = _replay_peak_mib(capture)
    assert out["available"] == 1, out


class _OrderedHost(FakeHost):
    """Records runs and writes in one sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, timeout: float = 60.0) -> CommandResult:
        self.events.append(("run", *argv))
        return super().run(argv, timeout=timeout)

    def write_file(self, path: str, data: bytes) -> None:
        self.events.append(("write", path))
        super().write_file(path, data)


def test_the_api_key_for_the_replay_is_written_only_into_a_private_directory_and_made_0600() -> None:
    # write_file creates with the host's umask (0644 over SFTP); mkdir -p made the capture directory 0700 only
    # when it created it, so the key file was as private as a directory bgdeploy did not check.
    host = _OrderedHost()
    spec = SPEC.replace("runtime:\n", "runtime:\n  api_key_env: RT12_API_KEY\n  secret_env: [RT12_API_KEY]\n", 1)
    session = fake_session(spec + "validation:\n  replay: {capture: {sample: 0.5}}\n", host=host)
    session.environ = {"RT12_API_KEY": "rt12-api-key-value"}
    with pytest.raises(DeployFailed):  # the fake host runs no python3
        replay(session, 18001, 18002)
    directory = "/home/deploy/.bgdeploy/unit/router/capture"
    kinds = [event[0] for event in host.events]
    write = kinds.index("write")
    key_file = host.events[write][1]
    assert key_file.startswith(directory + "/")
    private = ("run", "sh", "-c", 'umask 077 && mkdir -p "$1" && chmod 700 "$1"', "sh", directory)
    assert private in host.events[:write]
    assert ("run", "chmod", "600", "--", key_file) in host.events[write:]
    assert key_file not in host.files  # removed after the replay
    assert not any("rt12-api-key-value" in " ".join(event) for event in host.events)


def test_a_preview_never_gets_the_captured_requests() -> None:
    # A preview runs the pull request's image (with the network): replaying production's captured requests into
    # it would hand live users' prompts to whoever wrote the pull request.
    host = FakeHost()
    session = fake_session(SPEC + "validation:\n  replay: {capture: {sample: 0.5}}\n", host=host, command="preview")
    validate_with_replay(session, "green", 18001, 18002)
    assert host.ran == [] and session.result.replay is None
    assert any("replay skipped: a preview" in w for w in session.result.warnings)
    deploy = fake_session(SPEC + "validation:\n  replay: {capture: {sample: 0.5}}\n", host=host)
    with pytest.raises(DeployFailed):  # a deploy does replay (the fake host has no python3)
        validate_with_replay(deploy, "green", 18001, 18002)
    assert any(argv[0] == "python3" for argv in host.ran)


class _Refuses(BaseHTTPRequestHandler):
    """A model server that refuses (400) any prompt holding "junk" and answers the others."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, answer = (400, {"error": "bad"}) if "junk" in body["prompt"] else (200, {"choices": [{"text": "ok"}]})
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_requests_both_colours_refuse_do_not_count_against_green(tmp_path: Path) -> None:
    # Anyone using the live endpoint can send requests every server refuses (400); captured and replayed, they
    # made green's error rate whatever the sender liked, so max_error_rate refused every deploy.
    capture = tmp_path / "capture.jsonl"
    prompts = [f"junk {i}" for i in range(6)] + [f"fine {i}" for i in range(4)]
    capture.write_text("".join(line(json.dumps({"prompt": p})) + "\n" for p in prompts))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    args = {"files": [str(capture)], "count": 10, "seed": 1, "max_tokens": 8, "concurrency": 2, "timeout": 30}
    args |= {"green": base, "live": base, "key_file": None}
    try:
        done = subprocess.run(
            [sys.executable, "-c", host_script(), json.dumps(args)], capture_output=True, text=True, timeout=120
        )
    finally:
        server.shutdown()
        server.server_close()
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["refused_by_both"] == 6, out
    assert out["green"] == {"requests": 4, "errors": 0, "latency_p95_s": out["green"]["latency_p95_s"]}
    assert out["compared"] == 4 and out["agreed"] == 4
    assert "junk" not in done.stdout + done.stderr
