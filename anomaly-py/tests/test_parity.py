"""ROC-AUC parity with scikit-learn on the public tabular sets, both measured in this run.

Protocol (the unsupervised ADBench protocol, shared/data/SOURCES.md): fit on all rows without labels, score the
same rows, ROC-AUC against y; 100 trees, 256 rows per tree. Each side's figure is its mean over seeds 0..N-1
(N = ANOMALY_PARITY_SEEDS, default 30): one seed's ROC-AUC varies by about 0.01 between seeds (see
anomaly-core/tests/it/accuracy.rs), so a 0.01 tolerance needs the mean of many; with 30 seeds the difference of two
means of identical algorithms has a standard deviation of about 0.003.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from anomaly import IsolationForest

from conftest import shared_data

sklearn = pytest.importorskip("sklearn")
from sklearn.ensemble import IsolationForest as SkIsolationForest  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

SETS = ["6_cardio", "23_mammography", "30_satellite", "32_shuttle"]
SEEDS = int(os.environ.get("ANOMALY_PARITY_SEEDS", "30"))
TOLERANCE = 0.01


def load(name: str):
    data = shared_data()
    path = None if data is None else data / "tabular" / f"{name}.npz"
    if path is None or not path.is_file():
        msg = f"SKIPPED parity on {name}: shared data not found (../shared/data beside the checkout or ANOMALY_SHARED_DATA)"
        warnings.warn(msg)
        pytest.skip(msg)
    with np.load(path) as npz:
        return npz["X"].astype(np.float64), (npz["y"] == 1).astype(int)


@pytest.mark.parametrize("name", SETS)
def test_roc_auc_within_0_01_of_scikit_learn(name):
    x, y = load(name)
    ours, theirs = [], []
    for seed in range(SEEDS):
        kw = dict(n_estimators=100, max_samples=256, random_state=seed)
        ours.append(roc_auc_score(y, -IsolationForest(**kw).fit(x).score_samples(x)))
        theirs.append(roc_auc_score(y, -SkIsolationForest(**kw).fit(x).score_samples(x)))
    mean_ours, mean_theirs = float(np.mean(ours)), float(np.mean(theirs))
    print(f"{name}: anomaly {mean_ours:.4f}, scikit-learn {mean_theirs:.4f} (mean of {SEEDS} seeds)")
    assert abs(mean_ours - mean_theirs) <= TOLERANCE, (name, mean_ours, mean_theirs)


def parity_weights(y: np.ndarray) -> np.ndarray:
    """Weights that move the scores: 1-3 at random, the labelled anomalies three times heavier (so the trees learn
    them as more normal and the ROC-AUC drops), and a tenth of the inliers at 0 (never drawn)."""
    rng = np.random.default_rng(7)
    w = rng.integers(1, 4, len(y)).astype(np.float64)
    w[y == 1] *= 3.0
    w[(rng.random(len(y)) < 0.1) & (y == 0)] = 0.0
    return w


@pytest.mark.parametrize("name", SETS)
def test_weighted_roc_auc_within_0_01_of_scikit_learn(name):
    x, y = load(name)
    w = parity_weights(y)
    ours, theirs, plain = [], [], []
    for seed in range(SEEDS):
        kw = dict(n_estimators=100, max_samples=256, random_state=seed)
        ours.append(roc_auc_score(y, -IsolationForest(**kw).fit(x, sample_weight=w).score_samples(x)))
        theirs.append(roc_auc_score(y, -SkIsolationForest(**kw).fit(x, sample_weight=w).score_samples(x)))
        plain.append(roc_auc_score(y, -IsolationForest(**kw).fit(x).score_samples(x)))
    mean_ours, mean_theirs, mean_plain = float(np.mean(ours)), float(np.mean(theirs)), float(np.mean(plain))
    print(
        f"{name} weighted: anomaly {mean_ours:.4f}, scikit-learn {mean_theirs:.4f} "
        f"(unweighted anomaly {mean_plain:.4f}; mean of {SEEDS} seeds)"
    )
    assert abs(mean_ours - mean_theirs) <= TOLERANCE, (name, mean_ours, mean_theirs)
    # The weights matter: a forest that ignored them would score as the unweighted one.
    assert mean_plain - mean_ours > TOLERANCE, (name, mean_plain, mean_ours)
