#!/usr/bin/env python3
"""Side-by-side comparison of scikit-learn's IsolationForest with anomaly-core's `detect` binary, on the same data.

For each size ROWSxCOLS it generates rows from N(0, I) with 1% of them (at random) scaled by 3 (numpy, seeded), saves
them as .npy in a temporary directory (the size `cardio` reads the bundled ADBench cardio sample instead: 1,831 × 21,
with its labels, where the fixed cost of a call shows), then times

* scikit-learn: IsolationForest(n_estimators=100, max_samples=256, random_state=0, n_jobs=1): fit, then
  score_samples on every row;
* anomaly-core: the release `detect` binary (100 trees, 256 rows per tree, seed 0), once with --threads 1 and once
  with --threads 2, reading fit_seconds and score_seconds from its --report JSON (file reading excluded, as the
  scikit-learn times exclude generating the data);

and prints a table: fit time and its ratio (scikit-learn's time / ours, so > 1 means faster than scikit-learn),
scoring rows/s and its ratio (our rows/s / scikit-learn's rows/s), and the ROC-AUC of both against the planted labels,
computed with the same function (sklearn.metrics.roc_auc_score) from each side's per-row scores. Every time is the
median of --repeat runs (the machine is shared and noisy: compare ratios from one run, not absolute figures).

Usage, from anywhere in the repository (needs cargo, numpy and scikit-learn):

    python benches/compare_sklearn.py
    python benches/compare_sklearn.py --sizes cardio,1000000x10,1000000x100 --repeat 7

The binary is built once with `cargo build --release --bin detect` at the start (skip with --detect PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parent.parent
OUTLIER_FRACTION = 0.01
OUTLIER_SCALE = 3.0
N_TREES = 100
MAX_SAMPLES = 256


CARDIO = "cardio"


def parse_sizes(text: str) -> list[tuple[int, int] | str]:
    sizes: list[tuple[int, int] | str] = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == CARDIO:
            sizes.append(CARDIO)
            continue
        try:
            rows, cols = (int(v.replace("_", "")) for v in part.split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected ROWSxCOLS or cardio, got {part!r}") from None
        if rows < 2 or cols < 1:
            raise argparse.ArgumentTypeError(f"need at least 2 rows and 1 column, got {part!r}")
        sizes.append((rows, cols))
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def load_cardio() -> tuple[np.ndarray, np.ndarray]:
    """The bundled ADBench cardio sample (the `detect` binary's default data) and its 0/1 labels."""
    folder = REPO / "examples" / "data" / "cardio"
    x = np.loadtxt(folder / "cardio.csv", delimiter=",", skiprows=1)
    labels = np.loadtxt(folder / "labels.txt", dtype=np.int8)
    return x, labels


def make_data(rows: int, cols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """N(0, I) rows, 1% of them (chosen at random) scaled by 3; returns the data and 0/1 labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols))
    planted = rng.choice(rows, size=max(1, round(rows * OUTLIER_FRACTION)), replace=False)
    x[planted] *= OUTLIER_SCALE
    labels = np.zeros(rows, dtype=np.int8)
    labels[planted] = 1
    return x, labels


def build_detect() -> Path:
    """Builds the release `detect` binary once and returns its path."""
    print("$ cargo build --release --bin detect", flush=True)
    try:
        subprocess.run(["cargo", "build", "--release", "--bin", "detect"], cwd=REPO, check=True)
        meta = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        sys.exit("error: cargo is not on PATH (or pass --detect PATH to a built binary)")
    except subprocess.CalledProcessError as e:
        sys.exit(f"error: `{' '.join(e.cmd)}` failed with exit status {e.returncode}")
    target = Path(json.loads(meta.stdout)["target_directory"])
    exe = target / "release" / ("detect.exe" if os.name == "nt" else "detect")
    if not exe.is_file():
        sys.exit(f"error: {exe} was not built")
    return exe


def time_sklearn(x: np.ndarray, labels: np.ndarray, repeat: int) -> dict:
    fit_s, score_s = [], []
    for _ in range(repeat):
        model = IsolationForest(
            n_estimators=N_TREES, max_samples=MAX_SAMPLES, random_state=0, n_jobs=1
        )
        t0 = time.perf_counter()
        model.fit(x)
        t1 = time.perf_counter()
        samples = model.score_samples(x)
        t2 = time.perf_counter()
        fit_s.append(t1 - t0)
        score_s.append(t2 - t1)
    # score_samples: lower is more anomalous.
    return {
        "fit": statistics.median(fit_s),
        "score": statistics.median(score_s),
        "auc": roc_auc_score(labels, -samples),
        "flagged": int((model.predict(x) == -1).sum()),
    }


def time_detect(exe: Path, npy: Path, labels_path: Path, labels: np.ndarray, threads: int, repeat: int) -> dict:
    fit_s, score_s = [], []
    report: dict = {}
    scores_path = npy.with_name(f"scores_{threads}.txt")
    report_path = npy.with_name(f"report_{threads}.json")
    for _ in range(repeat):
        cmd = [
            str(exe),
            "--input", str(npy),
            "--labels", str(labels_path),
            "--scores", str(scores_path),
            "--report", str(report_path),
            "--trees", str(N_TREES),
            "--sample-size", str(MAX_SAMPLES),
            "--seed", "0",
            "--threads", str(threads),
            "--top", "0",
        ]
        run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if run.returncode != 0:
            sys.exit(f"error: detect exited with status {run.returncode}: {run.stderr.strip()}")
        report = json.loads(report_path.read_text())
        fit_s.append(report["fit_seconds"])
        score_s.append(report["score_seconds"])
    scores = np.loadtxt(scores_path)
    if scores.shape != labels.shape:
        sys.exit(f"error: detect wrote {scores.shape} scores for {labels.shape[0]} rows")
    return {
        "fit": statistics.median(fit_s),
        "score": statistics.median(score_s),
        # Higher is more anomalous; the same AUC function as for scikit-learn.
        "auc": roc_auc_score(labels, scores),
        "detect_auc": report.get("roc_auc"),
        "flagged": report["n_anomalies"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("cardio,100000x10,1000000x10"),
        help="comma-separated ROWSxCOLS or cardio (default: cardio,100000x10,1000000x10)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data (default 0)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each timing; the median is kept (default 5)")
    parser.add_argument("--detect", type=Path, help="use this detect binary instead of building it")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    exe = args.detect.resolve() if args.detect else build_detect()
    print(
        f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}; detect: {exe}"
    )
    print(
        f"IsolationForest: {N_TREES} trees, max_samples {MAX_SAMPLES}, seed 0; scikit-learn n_jobs=1; "
        f"median of {args.repeat} run(s)\n"
    )

    results = []
    with tempfile.TemporaryDirectory(prefix="anomaly-compare-") as tmp:
        for size in args.sizes:
            if size == CARDIO:
                name = CARDIO
                x, labels = load_cardio()
            else:
                rows, cols = size
                name = f"{rows}x{cols}"
                print(f"[{name}] generating data", flush=True)
                x, labels = make_data(rows, cols, args.seed)
            rows = x.shape[0]
            npy = Path(tmp) / f"X_{name}.npy"
            labels_path = Path(tmp) / f"labels_{name}.txt"
            np.save(npy, x)
            np.savetxt(labels_path, labels, fmt="%d")
            print(f"[{name}] scikit-learn", flush=True)
            sk = time_sklearn(x, labels, args.repeat)
            ours = {}
            for threads in (1, 2):
                print(f"[{name}] detect --threads {threads}", flush=True)
                ours[threads] = time_detect(exe, npy, labels_path, labels, threads, args.repeat)
            results.append((name, rows, sk, ours))
            del x
            npy.unlink()

    header = (
        f"{'size':<13} {'implementation':<22} {'fit ms':>9} {'fit ratio':>9} {'score rows/s':>13} "
        f"{'score ratio':>11} {'ROC-AUC':>8} {'flagged':>8}"
    )
    print("\n" + header)
    print("-" * len(header))
    for name, rows, sk, ours in results:
        sk_rate = rows / sk["score"]
        print(
            f"{name:<13} {'scikit-learn n_jobs=1':<22} {sk['fit'] * 1e3:>9.1f} {'1.00':>9} {sk_rate:>13,.0f} "
            f"{'1.00':>11} {sk['auc']:>8.4f} {sk['flagged']:>8}"
        )
        for threads, r in ours.items():
            rate = rows / r["score"]
            print(
                f"{'':<13} {f'anomaly-core {threads} thr':<22} {r['fit'] * 1e3:>9.1f} {sk['fit'] / r['fit']:>9.2f} "
                f"{rate:>13,.0f} {rate / sk_rate:>11.2f} {r['auc']:>8.4f} {r['flagged']:>8}"
            )
    print(
        "\nfit ratio = scikit-learn fit time / ours; score ratio = our rows/s / scikit-learn rows/s (> 1: faster).\n"
        "ROC-AUC against the planted labels, from each side's scores with sklearn.metrics.roc_auc_score; "
        "flagged = rows past the default threshold (score 0.5, contamination='auto')."
    )
    for name, _, _, ours in results:
        for threads, r in ours.items():
            if r["detect_auc"] is not None and abs(r["detect_auc"] - r["auc"]) > 1e-9:
                print(f"warning: {name}, {threads} thread(s): detect reports ROC-AUC {r['detect_auc']}, "
                      f"roc_auc_score gives {r['auc']}")


if __name__ == "__main__":
    main()
