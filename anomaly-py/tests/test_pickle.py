"""Pickling goes through the core's versioned snapshot: Python ↔ Rust both ways, identical scores."""

from __future__ import annotations

import json
import pickle
import subprocess

import numpy as np
import pytest

import anomaly
from anomaly import IsolationForest


def rust(snapshot_bin, *args) -> dict:
    out = subprocess.run([str(snapshot_bin), *map(str, args)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_pickle_round_trip_scores_identically(blobs):
    pd = pytest.importorskip("pandas")
    x, _ = blobs
    df = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    model = IsolationForest(n_estimators=50, contamination=0.05, random_state=4).fit(df)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.score_samples(df), model.score_samples(df))
    np.testing.assert_array_equal(restored.predict(df), model.predict(df))
    assert restored.offset_ == model.offset_ and restored.get_params() == model.get_params()
    assert list(restored.feature_names_in_) == ["a", "b", "c", "d"]
    # The pickle carries the snapshot, not a Python copy of the trees.
    assert b"anomaly-snapshot" in pickle.dumps(model)


def test_unfitted_estimator_pickles():
    model = pickle.loads(pickle.dumps(IsolationForest(n_estimators=7)))
    assert model.n_estimators == 7 and not hasattr(model, "_model")


def test_python_model_loads_in_rust(tmp_path, blobs, snapshot_bin):
    x, _ = blobs
    model = IsolationForest(n_estimators=60, random_state=9).fit(x)
    # A pickled model's state holds the snapshot bytes that Rust reads.
    snap = pickle.loads(pickle.dumps(model)).to_snapshot_bytes()
    assert snap == model.to_snapshot_bytes()
    (tmp_path / "py.snap").write_bytes(snap)
    (tmp_path / "rows.json").write_text(json.dumps(x.tolist()))
    out = rust(snapshot_bin, "score", tmp_path / "py.snap", tmp_path / "rows.json")
    assert out["kind"] == "isolation_forest"
    np.testing.assert_array_equal(np.array(out["scores"]), model.score_samples(x))


def test_rust_model_loads_in_python(tmp_path, blobs, snapshot_bin):
    x, _ = blobs
    (tmp_path / "rows.json").write_text(json.dumps(x.tolist()))
    out = rust(snapshot_bin, "fit", tmp_path / "rows.json", tmp_path / "rust.snap", 3, 70)
    model = IsolationForest.from_snapshot_bytes((tmp_path / "rust.snap").read_bytes())
    assert model.get_params()["n_estimators"] == 70 and model.get_params()["random_state"] == 3
    np.testing.assert_array_equal(model.score_samples(x), np.array(out["score_samples"]))
    # Same seed, same data, fitted in Python: the same forest.
    np.testing.assert_array_equal(
        IsolationForest(n_estimators=70, random_state=3).fit(x).score_samples(x), model.score_samples(x)
    )
    # And it pickles again.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).score_samples(x), model.score_samples(x))


@pytest.mark.parametrize(
    "make",
    [
        lambda: anomaly.MovingAverage(window=10, sigma=3.0),
        lambda: anomaly.Ema(alpha=0.2, warmup=10),
        lambda: anomaly.StreamingIsolationForest(warmup=50, window_size=200, n_estimators=20, seed=2),
    ],
)
def test_streaming_state_crosses_languages(tmp_path, snapshot_bin, make):
    rng = np.random.default_rng(1)
    series = rng.standard_normal((400, 2))
    detector = make()
    detector.score_many(series[:300])  # learn some state first
    restored = pickle.loads(pickle.dumps(detector))
    assert type(restored) is type(detector)
    (tmp_path / "d.snap").write_bytes(detector.to_snapshot_bytes())
    (tmp_path / "rest.json").write_text(json.dumps(series[300:].tolist()))
    from_rust = rust(snapshot_bin, "score", tmp_path / "d.snap", tmp_path / "rest.json")["scores"]
    a = detector.score_many(series[300:])
    b = restored.score_many(series[300:])
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.ready.any()
    rust_scores = np.array([np.nan if s is None else s for s in from_rust])
    np.testing.assert_array_equal(rust_scores, a.scores)


def test_engine_model_crosses_languages(tmp_path, snapshot_bin):
    engine = anomaly.Engine(min_training_records=50, seed=1)
    rng = np.random.default_rng(0)
    records = [{"amount": float(rng.gamma(2.0, 20.0)), "country": str(rng.choice(["FR", "DE"]))} for _ in range(60)]
    engine.observe_many("shop", records)
    probe = [{"amount": 30.0, "country": "FR"}, {"amount": 9000.0, "country": "KP"}]
    (tmp_path / "m.snap").write_bytes(engine.model_snapshot("shop"))
    (tmp_path / "probe.json").write_text(json.dumps(probe))
    out = rust(snapshot_bin, "score", tmp_path / "m.snap", tmp_path / "probe.json")
    assert out["kind"] == "record_model"
    assert out["scores"] == [engine.score("shop", r)["score"] for r in probe]
    assert out["scores"][1] > out["scores"][0]
