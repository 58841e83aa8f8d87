"""Records held as columns: ``Engine.score_frame`` and ``RecordModel.score`` on a DataFrame or a mapping of arrays
score each row as its dict, bit for bit, whatever the columns' dtypes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import anomaly


def records(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r = {
            "amount": float(100 + 20 * rng.random()),
            "quantity": int(rng.integers(1, 10)),
            "price": f"{5 + rng.random():.2f}",
            "country": str(rng.choice(["FR", "DE", "ES", "IT"])),
            "express": bool(rng.random() < 0.2),
            "created_at": f"2024-03-{1 + i % 28:02d}T{int(rng.integers(0, 24)):02d}:{i % 60:02d}:00Z",
            "customer": {"tier": ["gold", "basic"][i % 2], "age": int(rng.integers(18, 80))},
        }
        out.append(r)
    return out


@pytest.fixture(scope="module")
def trained() -> tuple[anomaly.Engine, list[dict]]:
    train = records(600, 1)
    engine = anomaly.Engine(min_training_records=600, retrain_every=10**9, drift=False, n_estimators=50, seed=0)
    engine.observe_many("orders", train)
    assert engine.model_info("orders") is not None
    probe = records(400, 2)
    # What does not fit the schema, and what is missing.
    probe[3]["amount"] = None
    probe[4]["country"] = "ZZ"
    probe[5]["coupon"] = "SPRING"
    probe[6]["quantity"] = 10_000
    probe[7]["price"] = "n/a"
    del probe[8]["customer"]
    return engine, probe


def scores_of(outcomes: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([o["score"] for o in outcomes]), np.array([o["is_anomaly"] for o in outcomes])


def test_a_frame_scores_as_its_dicts_bit_for_bit(trained):
    engine, probe = trained
    expected, flagged = scores_of(engine.score_many("orders", probe))
    frame = pd.json_normalize(probe)
    got = engine.score_frame("orders", frame)
    assert isinstance(got, anomaly.FrameScores)
    np.testing.assert_array_equal(got.score, expected)
    np.testing.assert_array_equal(got.is_anomaly, flagged)
    assert got.threshold == engine.score("orders", probe[0])["threshold"]
    assert got.model_version == engine.model_info("orders")["version"]
    # Strings as Python objects (pandas 2's default), as categoricals, and a slice of Arrow strings (offsets that
    # do not start at zero).
    as_objects = frame.astype({c: object for c in ["price", "country", "created_at", "customer.tier"]})
    np.testing.assert_array_equal(engine.score_frame("orders", as_objects).score, expected)
    as_categories = frame.astype({"country": "category", "customer.tier": "category"})
    np.testing.assert_array_equal(engine.score_frame("orders", as_categories).score, expected)
    sliced = frame.iloc[100:]
    np.testing.assert_array_equal(engine.score_frame("orders", sliced).score, expected[100:])
    # A mapping of plain arrays.
    mapping = {name: frame[name].to_numpy(dtype=object if frame[name].dtype == object else None) for name in frame}
    mapping = {name: np.asarray(values) for name, values in mapping.items()}
    np.testing.assert_array_equal(engine.score_frame("orders", mapping).score, expected)


def test_dtypes_read_as_dict_values(trained):
    engine, probe = trained
    frame = pd.json_normalize(probe).iloc[:50].reset_index(drop=True)
    typed = frame.copy()
    typed["quantity"] = typed["quantity"].astype("Int64")
    typed.loc[2, "quantity"] = pd.NA
    typed["express"] = typed["express"].astype("boolean")
    typed.loc[3, "express"] = pd.NA
    typed["customer.age"] = typed["customer.age"].astype("float32")
    # pd.NA as None in the dicts: both are missing.
    rows = typed.astype(object).where(typed.notna(), None).to_dict("records")
    expected, _ = scores_of(engine.score_many("orders", rows))
    np.testing.assert_array_equal(engine.score_frame("orders", typed).score, expected)
    # Date/times as datetime64, with and without a time zone, score as their ISO strings.
    dated = frame.copy()
    dated["created_at"] = pd.to_datetime(dated["created_at"])
    expected, _ = scores_of(engine.score_many("orders", frame.to_dict("records")))
    np.testing.assert_array_equal(engine.score_frame("orders", dated).score, expected)
    dated["created_at"] = dated["created_at"].dt.tz_convert("Europe/Paris")
    np.testing.assert_array_equal(engine.score_frame("orders", dated).score, expected)
    naive = frame.copy()
    naive["created_at"] = pd.to_datetime(naive["created_at"]).dt.tz_localize(None)
    naive.loc[0, "created_at"] = pd.NaT
    rows = frame.to_dict("records")
    rows[0]["created_at"] = None
    np.testing.assert_array_equal(
        engine.score_frame("orders", naive).score, scores_of(engine.score_many("orders", rows))[0]
    )


def test_record_model_scores_frames(trained):
    _, probe = trained
    model = anomaly.RecordModel.fit(records(500, 3), n_estimators=30)
    scores, flagged = model.score(probe)
    got_scores, got_flagged = model.score(pd.json_normalize(probe))
    np.testing.assert_array_equal(got_scores, scores)
    np.testing.assert_array_equal(got_flagged, flagged)


def test_learning_keys_and_empty_frames():
    engine = anomaly.Engine(min_training_records=100)
    got = engine.score_frame("new", pd.DataFrame({"a": [1.0, 2.0]}))
    assert np.isnan(got.score).all() and not got.is_anomaly.any()
    assert got.threshold is None and got.model_version is None
    empty = engine.score_frame("new", pd.DataFrame({"a": np.array([], dtype=float)}))
    assert empty.score.shape == (0,)


def test_bad_columns_are_refused_by_name(trained):
    engine, probe = trained
    frame = pd.DataFrame(probe)  # `customer` holds dicts: not flattened
    with pytest.raises(anomaly.exceptions.InvalidRecordError, match="column `customer`, row 0.*json_normalize"):
        engine.score_frame("orders", frame)
    odd = pd.json_normalize(probe)
    odd["when"] = [object()] * len(odd)
    with pytest.raises(TypeError, match="column `when`, row 0"):
        engine.score_frame("orders", odd)
    with pytest.raises(ValueError, match="different lengths"):
        engine.score_frame("orders", {"amount": np.ones(3), "quantity": np.ones(2)})
    with pytest.raises(ValueError, match="unique"):
        engine.score_frame("orders", pd.DataFrame([[1.0, 2.0]], columns=["amount", "amount"]))
    with pytest.raises(ValueError, match="one dimension"):
        engine.score_frame("orders", {"amount": np.ones((2, 2))})
