"""Streaming detectors: warm-up, detections, explanations, the native loop equals update()."""

from __future__ import annotations

import numpy as np
import pytest

import anomaly
from anomaly import Ema, MovingAverage, StreamingIsolationForest


def test_moving_average_warm_up_and_detection():
    d = MovingAverage(window=3, threshold=5.0)
    out = [d.update(v) for v in [10.0, 11.0, 10.0, 10.5, 30.0]]
    assert out[:3] == [None, None, None]  # warm-up is explicit
    assert not out[3].is_anomaly and out[4].is_anomaly
    det = out[4]
    assert det.score == pytest.approx(30.0 - np.mean([11.0, 10.0, 10.5])) and det.threshold == 5.0
    assert det.score > det.threshold
    assert "30" in det.rationale and det.details["detector"] == "moving_average"
    assert d.params == {"window": 3, "threshold": 5.0, "sigma": None}
    assert MovingAverage().params == anomaly._native.stream_defaults()["moving_average"]


def test_score_does_not_learn():
    d = MovingAverage(window=2, threshold=1.0)
    for v in (1.0, 1.0):
        d.update(v)
    first = d.score(100.0)
    assert first.is_anomaly and d.score(100.0) == first
    assert d.explain(100.0).score == first.score


@pytest.mark.parametrize(
    "make",
    [
        lambda: MovingAverage(window=20, sigma=4.0),
        lambda: Ema(alpha=0.1),
        lambda: StreamingIsolationForest(seed=3, warmup=100, window_size=256, n_estimators=25),
    ],
)
def test_score_many_equals_update_one_by_one(make):
    rng = np.random.default_rng(7)
    series = rng.standard_normal((600, 3))
    series[400:410] += 12.0  # a sustained level shift
    batch = make().score_many(series)
    one = make()
    singles = [one.update(row) for row in series]
    ready = np.array([s is not None for s in singles])
    np.testing.assert_array_equal(batch.ready, ready)
    assert not ready[0] and ready[-1]
    np.testing.assert_array_equal(batch.scores[ready], [s.score for s in singles if s is not None])
    np.testing.assert_array_equal(batch.thresholds[ready], [s.threshold for s in singles if s is not None])
    np.testing.assert_array_equal(batch.is_anomaly[ready], [s.is_anomaly for s in singles if s is not None])
    assert np.isnan(batch.scores[~ready]).all() and not batch.is_anomaly[~ready].any()
    # The shift is found, and quiet data mostly is not.
    assert batch.is_anomaly[400:412].any()
    assert batch.is_anomaly[200:400].mean() < 0.05


def test_univariate_series_and_scalars():
    rng = np.random.default_rng(0)
    series = 100 + rng.standard_normal(200)
    series[150] = 160.0
    d = Ema(alpha=0.1, sigma=4.0)
    scores = d.score_many(series)
    assert d.dims == 1
    assert scores.is_anomaly[150] and scores.is_anomaly.sum() <= 3
    det = d.update(170.0)
    assert det.is_anomaly and det.details["detector"] == "ema"


def test_streaming_forest_detection_has_attributions():
    rng = np.random.default_rng(5)
    d = StreamingIsolationForest(seed=1, warmup=100, window_size=256, n_estimators=30, min_consecutive=1)
    d.score_many(rng.standard_normal((300, 2)))
    det = None
    for _ in range(5):
        det = d.update([0.0, 15.0])
    assert det is not None and det.is_anomaly
    assert det.attributions[0].feature == 1
    assert det.details["detector"] == "streaming_isolation_forest"
    assert "adaptive threshold" in det.rationale
