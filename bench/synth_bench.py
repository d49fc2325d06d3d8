"""Synthesis time of the whole app against the floor (one resource, same provider), in one run.

Runs each `--runs` times, alternating, in fresh processes (the provider's jsii assembly loads once
per process), with the Lambda bundles already built. Prints medians and the ratio (target ≤ 1.10).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    python = sys.executable
    subprocess.run([python, "-m", "lib.bundler"], cwd=ROOT, check=True, stderr=subprocess.DEVNULL)
    app, floor = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for run in range(1, args.runs + 1):
            floor.append(timed([python, "bench/floor_app.py", os.path.join(scratch, f"floor-{run}")]))
            app.append(timed([python, "main.py"]))
            print(f"  run {run}/{args.runs}: app {app[-1]:.2f} s, floor {floor[-1]:.2f} s", file=sys.stderr)
    app_median, floor_median = statistics.median(app), statistics.median(floor)
    print(f"synth: app (9 stacks) median {app_median:.2f} s, floor (1 resource) median {floor_median:.2f} s, "
          f"ratio {app_median / floor_median:.2f} (target <= 1.10) over {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
