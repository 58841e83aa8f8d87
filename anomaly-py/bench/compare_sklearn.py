#!/usr/bin/env python3
"""anomaly.IsolationForest next to scikit-learn's, in one process, on the same arrays.

For each size ROWSxCOLS: rows from N(0, I), 1% of them (at random) scaled by 3 (numpy, seeded), as in
benches/compare_sklearn.py. Both sides use 100 trees, max_samples=256, random_state=0. It times

* fit, on 1 and 2 threads (n_jobs);
* score_samples on every row, on 1 and 2 threads;
* single-row latency: predict(x[i:i+1]) called in a loop (median per call);
* Python's overhead: the estimator's score_samples against the native method it forwards to, on the same model
  (the difference is input checking and the call itself);

and prints times, then ratios: scikit-learn's time / ours (> 1 means faster than scikit-learn). ROC-AUC against the
planted labels is printed for both, from the same function.

Usage (after `pip install ./anomaly-py` and scikit-learn in the same environment):

    python anomaly-py/bench/compare_sklearn.py
    python anomaly-py/bench/compare_sklearn.py --sizes 100000x10,1000000x10 --repeat 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest as SkIsolationForest
from sklearn.metrics import roc_auc_score

import anomaly
from anomaly import IsolationForest

N_TREES = 100
MAX_SAMPLES = 256


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        rows, cols = (int(v.replace("_", "")) for v in part.strip().lower().split("x"))
        sizes.append((rows, cols))
    return sizes


def make_data(rows: int, cols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols))
    planted = rng.choice(rows, size=max(1, round(rows * 0.01)), replace=False)
    x[planted] *= 3.0
    labels = np.zeros(rows, dtype=np.int8)
    labels[planted] = 1
    return x, labels


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def latency(predict, x: np.ndarray, calls: int) -> float:
    """Median seconds per predict() on one row."""
    rows = [x[i : i + 1] for i in range(min(calls, len(x)))]
    for r in rows[:20]:
        predict(r)  # warm up
    per = []
    for r in rows:
        t0 = time.perf_counter()
        predict(r)
        per.append(time.perf_counter() - t0)
    return statistics.median(per)


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def run(rows: int, cols: int, repeat: int, sk_latency_calls: int) -> None:
    x, labels = make_data(rows, cols, seed=0)
    print(f"\n## {rows:,} x {cols}")
    res: dict[str, dict[str, float]] = {"scikit-learn": {}, "anomaly": {}}
    models = {}
    for threads in (1, 2):
        kw = dict(n_estimators=N_TREES, max_samples=MAX_SAMPLES, random_state=0, n_jobs=threads)
        for name, cls in (("scikit-learn", SkIsolationForest), ("anomaly", IsolationForest)):
            fit_s, model = best(lambda: cls(**kw).fit(x), repeat)
            score_s, samples = best(lambda: model.score_samples(x), repeat)
            res[name][f"fit{threads}"] = fit_s
            res[name][f"score{threads}"] = score_s
            res[name]["auc"] = roc_auc_score(labels, -samples)
            models[name, threads] = model
    ours = models["anomaly", 1]
    native_s, native = best(lambda: ours._model.score_samples(x), repeat)
    wrapped_s, wrapped = best(lambda: ours.score_samples(x), repeat)
    assert np.array_equal(native, wrapped)
    res["anomaly"]["latency"] = latency(ours.predict, x, 5000)
    res["scikit-learn"]["latency"] = latency(models["scikit-learn", 1].predict, x, sk_latency_calls)

    print(f"| {'':26} | {'scikit-learn':>12} | {'anomaly':>12} | {'ratio':>7} |")
    print(f"|{'-' * 28}|{'-' * 14}|{'-' * 14}|{'-' * 9}|")
    rows_out = [
        ("fit, 1 thread", "fit1"),
        ("fit, 2 threads", "fit2"),
        ("score_samples, 1 thread", "score1"),
        ("score_samples, 2 threads", "score2"),
        ("predict 1 row (median)", "latency"),
    ]
    for label, key in rows_out:
        sk, us = res["scikit-learn"][key], res["anomaly"][key]
        print(f"| {label:26} | {fmt(sk):>12} | {fmt(us):>12} | {sk / us:6.1f}x |")
    print(f"| {'ROC-AUC':26} | {res['scikit-learn']['auc']:12.4f} | {res['anomaly']['auc']:12.4f} | {'':7} |")
    us1, us2 = res["anomaly"]["score1"], res["anomaly"]["score2"]
    print(f"anomaly scoring speed-up from 1 to 2 threads: {us1 / us2:.2f}x")
    print(
        f"Python overhead on score_samples (1 thread): estimator {fmt(wrapped_s)} vs native {fmt(native_s)} "
        f"= {100 * (wrapped_s / native_s - 1):+.1f}%; scoring throughput {rows / wrapped_s / 1e6:.2f} M rows/s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("100000x10,1000000x10"))
    ap.add_argument("--repeat", type=int, default=1, help="best of N for fit and score (default 1)")
    ap.add_argument("--sk-latency-calls", type=int, default=300, help="single-row calls timed for scikit-learn")
    args = ap.parse_args()
    print(
        f"anomaly {anomaly.__version__}, scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()}; {N_TREES} trees, max_samples={MAX_SAMPLES}"
    )
    for rows, cols in args.sizes:
        run(rows, cols, args.repeat, args.sk_latency_calls)


if __name__ == "__main__":
    main()
