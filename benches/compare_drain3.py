#!/usr/bin/env python3
"""Side-by-side timing of Python Drain3 (the peer) and anomaly-core's log analysis on the loghub 2k sets.

For each set it times, one thread, best of --repeat runs:

* Drain3 0.9: a fresh `TemplateMiner()` with its defaults (no masking), `add_log_message` on every `Content` value;
* anomaly-core's Drain with Drain3's defaults on the same `Content` values (the same groups: see the tests);
* anomaly-core's whole `LogDetector` (masks, header level and time, Drain, every signal, learning) on the raw lines;

and prints lines/s and the ratio (ours / Drain3's, so > 1 means faster). The Rust side runs the release example
`log_timing` of this crate (built at the start).

Usage, from anywhere in the repository (needs cargo and `pip install drain3 pandas`):

    python benches/compare_drain3.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from drain3 import TemplateMiner

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("ANOMALY_SHARED_DATA", ROOT.parent / "shared" / "data"))


def contents(name: str) -> list[str]:
    if name == "BGL":
        path = DATA / "logs/bgl_2k/BGL_2k.log_structured.csv"
    else:
        path = DATA / f"logs/loghub_2k/{name}/{name}_2k.log_structured.csv"
    return pd.read_csv(path, dtype=str, keep_default_na=False)["Content"].tolist()


def drain3_seconds(lines: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        miner = TemplateMiner()
        for line in lines:
            miner.add_log_message(line)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # TemplateMiner() warns that it has no config file
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "anomaly-benches", "--example", "log_timing"], cwd=ROOT, check=True)
    binary = ROOT / "target/release/examples/log_timing"
    ours = {}
    out = subprocess.run([str(binary), "--repeat", str(args.repeat)], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        row = json.loads(line)
        ours[row["set"]] = row
    print(f"{'set':<10} {'Drain3 lines/s':>15} {'our Drain':>12} {'ratio':>7} {'our detector':>13} {'ratio':>7}")
    ratios, detector_ratios = [], []
    # Drain3 reads its configuration from the working directory: run it from an empty one.
    with tempfile.TemporaryDirectory() as empty:
        os.chdir(empty)
        for name, row in ours.items():
            lines = contents(name)
            peer = len(lines) / drain3_seconds(lines, args.repeat)
            drain = row["lines"] / row["drain_seconds"]
            detector = row["lines"] / row["detector_seconds"]
            ratios.append(drain / peer)
            detector_ratios.append(detector / peer)
            print(f"{name:<10} {peer:>15,.0f} {drain:>12,.0f} {drain / peer:>6.1f}x {detector:>13,.0f} {detector / peer:>6.1f}x")
    geo = lambda xs: float(pd.Series(xs).prod() ** (1 / len(xs)))
    print(f"geometric mean ratio: Drain {geo(ratios):.1f}x, whole detector {geo(detector_ratios):.1f}x Drain3's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
