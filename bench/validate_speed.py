"""How long validating a 500-prompt eval set takes at concurrency 8 against the stand-in, and peak memory.

The stand-in (tests/fakevllm) runs in its own process on 127.0.0.1 and answers at once, so the time is
bgdeploy's own cost: reading and sampling the eval set, streaming every answer (TTFT, ITL, tokens), judging.
Goals: under 10 s (bounded by the server, not by bgdeploy) and a runner peak RSS under 150 MB.
Usage: python bench/validate_speed.py [--prompts 500] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bgdeploy.plan.verdict import judge  # noqa: E402
from bgdeploy.spec import parse_spec_text  # noqa: E402
from bgdeploy.transports.http import ServerClient  # noqa: E402

TARGET_S = 10.0
TARGET_MB = 150.0
SPEC = """\
version: 1
name: bench
target: {transport: local}
model: {name: acme/chat, served_name: chat}
runtime: {image: fakevllm}
gpus: {blue: [], green: []}
validation:
  concurrency: CONCURRENCY
  datasets: [{path: evals/bench.jsonl, sample: PROMPTS, seed: 1}]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"the stand-in did not become ready within {deadline_s:g}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "FAKEVLLM_LOAD_SECONDS": "0"}
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/fakevllm/fakevllm.py"), "--model", "acme/chat", "--served-model-name",
         "chat", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "evals").mkdir()
            lines = [
                json.dumps({"chat": f"What is {i} + {i * 3}?", "max_tokens": 16, "expect": {"regex": rf"\b{i * 4}\b"}})
                for i in range(args.prompts)
            ]
            (folder / "evals/bench.jsonl").write_text("\n".join(lines) + "\n")
            text = SPEC.replace("CONCURRENCY", str(args.concurrency)).replace("PROMPTS", str(args.prompts))
            start = time.perf_counter()
            loaded = parse_spec_text(text, str(folder / "bluegreen.yaml"), environ={})
            prompts = list(loaded.datasets[0].prompts)
            loaded_s = time.perf_counter() - start
            with (
                ServerClient(url, timeout=60) as client,
                ThreadPoolExecutor(max_workers=args.concurrency) as pool,
            ):
                answers = list(pool.map(lambda p: client.ask(p, "chat", 60, stream=True), prompts))
            verdict = judge(prompts, answers, loaded.spec.validation.thresholds)
            total_s = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    ttft = verdict.ttft_p95_s or 0.0
    print(f"prompts {len(prompts)}, concurrency {args.concurrency}, streamed")
    print(f"read and sample the eval set: {loaded_s:.3f}s")
    print(f"validate (ask, stream, judge): {total_s:.2f}s  (goal < {TARGET_S:g}s)")
    print(
        f"pass rate {verdict.pass_rate:.2%}, TTFT p95 {ttft * 1000:.0f}ms, tokens/s p50 {verdict.tokens_per_s or 0:.0f}"
    )
    print(f"runner peak RSS: {peak_mb:.0f} MB  (goal < {TARGET_MB:g} MB)")
    met = total_s < TARGET_S and peak_mb < TARGET_MB and verdict.pass_rate == 1.0
    print("meets the goals" if met else "MISSES a goal")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
