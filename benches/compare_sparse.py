#!/usr/bin/env python3
"""Sparse input: ``anomaly.IsolationForest`` next to scikit-learn's on the same sparse one-hot matrix, in one process.

The matrix is ``--rows`` x ``--cols`` with ``--density`` of its entries set to 1 (a one-hot or bag-of-words
encoding), built once as CSR. Both libraries fit on it (scikit-learn converts to CSC for fitting, as it documents)
and score it (CSR), with 100 trees of 256 rows, on ``--threads`` threads; each time is the median of ``--repeat``
runs, and the ratio is scikit-learn's time over ours (> 1: faster than scikit-learn). Neither side makes the matrix
dense. The ROC-AUC of both against planted anomalous rows (rows with ten times the usual number of entries) is
printed as a check that the two scores agree in quality.

Usage (after ``pip install ./anomaly-py`` with scikit-learn and scipy, as ``scripts/test-python`` sets up in
``.venv``):

    .venv/bin/python benches/compare_sparse.py
    .venv/bin/python benches/compare_sparse.py --rows 100000 --cols 10000 --density 0.01 --repeat 3 --threads 1,2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import scipy
import scipy.sparse as sp
import sklearn
from sklearn.ensemble import IsolationForest as SkIsolationForest
from sklearn.metrics import roc_auc_score

import anomaly


def matrix(rows: int, cols: int, density: float, seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    per_row = rng.poisson(density * cols, rows).clip(1, cols)
    labels = np.zeros(rows, dtype=int)
    labels[rng.choice(rows, rows // 100, replace=False)] = 1
    per_row[labels == 1] = np.minimum(per_row[labels == 1] * 10, cols)
    indptr = np.concatenate([[0], np.cumsum(per_row)])
    indices = np.concatenate([np.sort(rng.choice(cols, k, replace=False)) for k in per_row])
    data = np.ones(len(indices))
    return sp.csr_matrix((data, indices, indptr), shape=(rows, cols)), labels


def median_time(run, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=10_000)
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    args = parser.parse_args()

    x, y = matrix(args.rows, args.cols, args.density, 0)
    print(
        f"scikit-learn {sklearn.__version__}, anomaly {anomaly.__version__}, scipy {scipy.__version__}, "
        f"numpy {np.__version__}, Python {platform.python_version()}; {args.rows:,} x {args.cols:,} CSR, "
        f"{x.nnz:,} entries ({x.nnz / (args.rows * args.cols):.2%}), median of {args.repeat} runs"
    )
    print()
    print(f"{'threads':>7}  {'what':<6} {'scikit-learn s':>15} {'anomaly s':>10} {'ratio':>6}  ROC-AUC sk / ours")
    for threads in (int(t) for t in args.threads.split(",")):
        kw = dict(n_estimators=100, max_samples=256, random_state=0, n_jobs=threads)
        sk_fit, sk = median_time(lambda: SkIsolationForest(**kw).fit(x), args.repeat)
        our_fit, ours = median_time(lambda: anomaly.IsolationForest(**kw).fit(x), args.repeat)
        sk_score, sk_s = median_time(lambda: sk.score_samples(x), args.repeat)
        our_score, our_s = median_time(lambda: ours.score_samples(x), args.repeat)
        auc = f"{roc_auc_score(y, -sk_s):.4f} / {roc_auc_score(y, -our_s):.4f}"
        print(f"{threads:>7}  {'fit':<6} {sk_fit:>15.3f} {our_fit:>10.3f} {sk_fit / our_fit:>6.1f}")
        print(f"{threads:>7}  {'score':<6} {sk_score:>15.3f} {our_score:>10.3f} {sk_score / our_score:>6.1f}  {auc}")
    print()
    print("ratio = scikit-learn's time / ours (> 1: faster than scikit-learn).")


if __name__ == "__main__":
    main()
