"""Median wall time of `bgdeploy validate` on each example, as a user runs it (a new process each time).

Target: under 0.3 s on a 2-core machine. Usage: python bench/validate.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.3


def command() -> list[str]:
    exe = shutil.which("bgdeploy", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "bgdeploy"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    base = command()
    worst = 0.0
    print(f"{'example':<22} {'median':>8} {'min':>8} {'max':>8}  (runs: {args.runs}, target < {TARGET_S}s)")
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([*base, "validate", "-f", str(example)], check=True, capture_output=True, timeout=60)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        worst = max(worst, median)
        print(f"{example.name:<22} {median:8.3f} {min(times):8.3f} {max(times):8.3f}")
    verdict = "meets" if worst < TARGET_S else "MISSES"
    print(f"slowest median {worst:.3f}s: {verdict} the {TARGET_S}s target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
