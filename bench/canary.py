"""How fast a canary catches a green that fails 5% of requests, at a given client request rate.

Deploys v1 on the testbed, then a v2 that answers HTTP 500 to 1 request in 20 (FAKEVLLM_ERROR_RATE=0.05)
as a canary at --weight percent, with rollback_on max_error_rate 1% and min_requests 20, under steady
client traffic. Prints the detection time (from the weight change to the breach), the requests green
served meanwhile, and the failed requests clients saw.

    scripts/testbed up && eval "$(scripts/testbed env)" && .venv/bin/python bench/canary.py --rate 30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cutover import CLEANUP, free_port, spec  # a sibling script, not a package
from traffic import Traffic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=30.0, help="client requests per second (approximate)")
    parser.add_argument("--weight", type=int, default=10, help="canary weight in percent")
    parser.add_argument("--interval", default="1s", help="rollout.analysis_interval")
    args = parser.parse_args()
    name = f"bench-canary-{os.getpid()}"
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="bgdeploy-canary-"))
    path = work / "bluegreen.yaml"
    try:
        path.write_text(yaml.safe_dump(spec(name, port, "acme/chat-v1", 1.0)))
        subprocess.run([sys.executable, "-m", "bgdeploy", "deploy", "-f", str(path)], check=True,
                       capture_output=True, timeout=300)
        data = spec(name, port, "acme/chat-v2", 1.0)
        data["runtime"]["env"]["FAKEVLLM_ERROR_RATE"] = "0.05"
        data["validation"]["compare_with_live"] = False
        data["rollout"] = {"strategy": "canary", "steps": [{"weight": args.weight, "bake": "300s"}],
                           "analysis_interval": args.interval,
                           "rollback_on": {"max_error_rate": 0.01, "min_requests": 20}}
        path.write_text(yaml.safe_dump(data))
        # Two clients: each waits `pause` between answers, so together they send about `rate` per second.
        traffic = Traffic(f"http://127.0.0.1:{port}", max_seconds=400, pause=max(0.0, 2 / args.rate - 0.005)).start()
        time.sleep(2)
        measured_from = time.monotonic()
        sent_before = traffic.sent
        out = work / "result.json"
        done = subprocess.run([sys.executable, "-m", "bgdeploy", "deploy", "-f", str(path), "--json", str(out)],
                              capture_output=True, text=True, timeout=600, check=False)
        rate = (traffic.sent - sent_before) / (time.monotonic() - measured_from)
        traffic.stop()
        result = json.loads(out.read_text())
    finally:
        subprocess.run([sys.executable, "-c", CLEANUP, name], check=False, timeout=120)
        shutil.rmtree(work, ignore_errors=True)
    if done.returncode != 1 or not result["canary"]:
        print(f"the canary was not caught (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return 1
    step = result["canary"][0]
    print(f"client rate: {rate:.1f} req/s; canary weight {args.weight}%; analysis every {args.interval}")
    print(f"detected after {step['seconds']:.1f}s at {step['weight']}%: green served {step['new']['requests']} "
          f"requests, {step['new']['errors']} failed ({step['new']['error_rate']:.1%}); verdict {step['verdict']}")
    print(f"clients saw {len(traffic.failures)} failed request(s) of {traffic.sent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
