"""Thread safety under concurrent.futures: shared fitted models, concurrent fits, shared detectors and engines."""

from __future__ import annotations

import os
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


def _pools() -> set[str]:
    """The sizes of the core's thread pools alive in this process (its threads are named anomaly-<size>-<i>)."""
    import os
    from pathlib import Path

    if not Path("/proc/self/task").is_dir():
        import pytest

        pytest.skip("SKIPPED: thread names are read from /proc (Linux)")
    names = set()
    for task in os.listdir("/proc/self/task"):
        try:
            names.add(Path(f"/proc/self/task/{task}/comm").read_text().strip())
        except OSError:
            continue
    return {n.split("-")[1] for n in names if n.startswith("anomaly-")}


def test_n_jobs_is_read_at_every_call_and_joblib_and_threadpoolctl_apply():
    joblib = __import__("pytest").importorskip("joblib")
    threadpoolctl = __import__("pytest").importorskip("threadpoolctl")
    x = np.random.default_rng(3).standard_normal((20_000, 4))
    model = IsolationForest(n_estimators=50, random_state=1, n_jobs=1).fit(x)
    reference = model.score_samples(x)
    # Changed after fit, as scikit-learn's estimators allow: the next call uses 11 threads.
    assert not {"11", "13", "17"} & _pools(), "sizes no other test uses"
    model.set_params(n_jobs=11)
    np.testing.assert_array_equal(model.score_samples(x), reference)
    assert "11" in _pools()
    # None inside a joblib configuration takes its n_jobs.
    model.set_params(n_jobs=None)
    with joblib.parallel_backend("threading", n_jobs=13):
        np.testing.assert_array_equal(model.decision_function(x), reference - model.offset_)
    assert "13" in _pools()
    # threadpoolctl's limit caps every call: 17 threads asked, 1 used (so no pool of 17 is built).
    with threadpoolctl.threadpool_limits(limits=1):
        ours = os.path.realpath(anomaly._native.__file__)
        info = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "anomaly"]
        assert [lib["num_threads"] for lib in info if os.path.realpath(lib["filepath"]) == ours] == [1]
        model.set_params(n_jobs=17)
        np.testing.assert_array_equal(model.predict(x), np.where(reference - model.offset_ < 0, -1, 1))
        IsolationForest(n_estimators=10, n_jobs=17).fit(x)
    assert "17" not in _pools()
    # The limit is lifted on exit, and a limit for this package alone applies too.
    every_core = anomaly._native._thread_limit()
    assert every_core >= 1
    with threadpoolctl.threadpool_limits(limits=1, user_api="anomaly"):
        assert anomaly._native._thread_limit() == 1
    assert anomaly._native._thread_limit() == every_core
