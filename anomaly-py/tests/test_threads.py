"""Thread safety under concurrent.futures: shared fitted models, concurrent fits, shared detectors and engines."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import anomaly
from anomaly import IsolationForest


def test_shared_model_scores_identically_from_many_threads(blobs):
    x, _ = blobs
    model = IsolationForest(random_state=0).fit(x)
    reference = model.score_samples(x)
    chunks = np.array_split(np.arange(len(x)), 16)
    with ThreadPoolExecutor(max_workers=8) as pool:
        parts = list(pool.map(lambda idx: model.score_samples(x[idx]), chunks * 4))
        singles = list(pool.map(lambda i: model.decision_function(x[i : i + 1])[0], range(len(x))))
    np.testing.assert_array_equal(np.concatenate(parts[:16]), reference)
    np.testing.assert_array_equal(np.concatenate(parts[16:32]), reference)
    np.testing.assert_array_equal(np.array(singles), reference - model.offset_)


def test_concurrent_fits_are_independent_and_reproducible(blobs):
    x, _ = blobs
    with ThreadPoolExecutor(max_workers=4) as pool:
        models = list(pool.map(lambda s: IsolationForest(random_state=s % 4, n_jobs=2).fit(x), range(12)))
    for seed in range(4):
        expected = IsolationForest(random_state=seed, n_jobs=1).fit(x).score_samples(x)
        for m in models[seed::4]:
            np.testing.assert_array_equal(m.score_samples(x), expected)


def test_shared_streaming_detector_serialises_updates():
    d = anomaly.MovingAverage(window=50, threshold=2.0)
    values = [5.0] * 2000 + [[5.0, 1.0]] * 8  # the vectors must fail: the width is fixed by the first update
    errors = []

    def update(v):
        try:
            return d.update(v)
        except anomaly.DimensionMismatchError as e:
            errors.append(e)

    with ThreadPoolExecutor(max_workers=8) as pool:
        out = list(pool.map(update, values))
    assert len(errors) == 8 and d.dims == 1
    assert sum(o is None for o in out[:2000]) == 50  # exactly one warm-up of `window` updates, whatever the order
    assert d.score(5.0).score == 0.0 and d.score(8.0).is_anomaly


def test_shared_engine_from_many_threads():
    engine = anomaly.Engine(min_training_records=50, seed=0)
    rng = np.random.default_rng(0)
    records = [{"x": float(v)} for v in rng.standard_normal(800)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda r: engine.observe(f"key{int(abs(r['x']) * 10) % 4}", r), records))
    assert len(outcomes) == 800
    assert sum(engine.stats(k)["seen"] for k in engine.keys()) == 800
