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
    np.testing.assert_array_equal(got.scores, expected)
    np.testing.assert_array_equal(got.is_anomaly, flagged)
    assert got.threshold == engine.score("orders", probe[0])["threshold"]
    assert got.model_version == engine.model_info("orders")["version"]
    # Strings as Python objects (pandas 2's default), as categoricals, and a slice of Arrow strings (offsets that
    # do not start at zero).
    as_objects = frame.astype({c: object for c in ["price", "country", "created_at", "customer.tier"]})
    np.testing.assert_array_equal(engine.score_frame("orders", as_objects).scores, expected)
    as_categories = frame.astype({"country": "category", "customer.tier": "category"})
    np.testing.assert_array_equal(engine.score_frame("orders", as_categories).scores, expected)
    sliced = frame.iloc[100:]
    np.testing.assert_array_equal(engine.score_frame("orders", sliced).scores, expected[100:])
    # A mapping of plain arrays.
    mapping = {name: frame[name].to_numpy(dtype=object if frame[name].dtype == object else None) for name in frame}
    mapping = {name: np.asarray(values) for name, values in mapping.items()}
    np.testing.assert_array_equal(engine.score_frame("orders", mapping).scores, expected)


def test_dtypes_read_as_dict_values(trained):
    engine, probe = trained
    frame = pd.json_normalize(probe).iloc[:50].reset_index(drop=True)
    typed = frame.copy()
    typed["quantity"] = typed["quantity"].astype("Int64")
    typed.loc[2, "quantity"] = pd.NA
    typed["express"] = typed["express"].astype("boolean")
    typed.loc[3, "express"] = pd.NA
    typed["customer.age"] = typed["customer.age"].astype("float32")
    # pd.NA and NaT in a column of objects are missing too.
    marked = frame.astype({"country": object, "price": object})
    marked.loc[0, "country"] = pd.NA
    marked.loc[1, "price"] = pd.NaT
    rows = frame.to_dict("records")
    rows[0]["country"] = None
    rows[1]["price"] = None
    np.testing.assert_array_equal(
        engine.score_frame("orders", marked).scores, scores_of(engine.score_many("orders", rows))[0]
    )
    # pd.NA as None in the dicts: both are missing.
    rows = typed.astype(object).where(typed.notna(), None).to_dict("records")
    expected, _ = scores_of(engine.score_many("orders", rows))
    np.testing.assert_array_equal(engine.score_frame("orders", typed).scores, expected)
    # Date/times score as their ISO strings: whole seconds, fractions, time zones (local time and offset), dates
    # past 2262 (beyond nanoseconds), Arrow timestamps, and NaT as missing.
    stamps = pd.to_datetime(frame["created_at"]) + pd.to_timedelta(np.arange(50) * 123_457, unit="us")
    stamps[0] = pd.NaT
    paris = stamps.dt.tz_convert("Europe/Paris")
    far = pd.Series(np.array(["3000-01-01T10:30:00", "2999-12-31T23:59:59"] * 25, dtype="datetime64[s]"))
    for column in [stamps, paris, stamps.dt.tz_localize(None), far, stamps.astype("timestamp[us, tz=UTC][pyarrow]")]:
        dated = frame.copy()
        dated["created_at"] = column
        rows = frame.to_dict("records")
        for row, value in zip(rows, column):
            row["created_at"] = None if pd.isna(value) else pd.Timestamp(value).isoformat()
        expected, _ = scores_of(engine.score_many("orders", rows))
        np.testing.assert_array_equal(engine.score_frame("orders", dated).scores, expected, err_msg=str(column.dtype))
    # Arrow strings in several chunks, and a uint64 column beyond int64.
    chunked = frame.copy()
    chunked["country"] = pd.Series(
        pd.arrays.ArrowExtensionArray(
            __import__("pyarrow").chunked_array([frame["country"][:20].tolist(), frame["country"][20:].tolist()])
        )
    )
    chunked["customer.age"] = np.array([2**64 - 1] + [30] * 49, dtype=np.uint64)
    rows = frame.to_dict("records")
    for row, age in zip(rows, chunked["customer.age"]):
        row["customer.age"] = int(age)
    expected, _ = scores_of(engine.score_many("orders", rows))
    np.testing.assert_array_equal(engine.score_frame("orders", chunked).scores, expected)
    # Arrow strings with bytes that are not UTF-8 under a null row (which Arrow allows).
    import pyarrow as pa

    offsets = np.array([0, 2, 4, 6], dtype=np.int64)
    garbled = pa.Array.from_buffers(
        pa.large_string(), 3, [pa.py_buffer(bytes([0b101])), pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"FR\xff\xfeDE")]
    )
    small = {"country": pd.Series(pd.arrays.ArrowExtensionArray(garbled)), "amount": [100.0, 101.0, 102.0]}
    expected, _ = scores_of(engine.score_many("orders", [{"country": c, "amount": a} for c, a in zip(["FR", None, "DE"], small["amount"])]))
    np.testing.assert_array_equal(engine.score_frame("orders", small).scores, expected)


def test_dicts_read_natively_as_records(trained):
    engine, probe = trained
    odd = [dict(r) for r in probe[:40]]
    # Lists (summarised), a key with a dot beside the nested field of that path (two leaves on one path), NaN,
    # numpy scalars, a non-string key, and a value nested deeper than the limits: each row as its record.
    odd[0]["tags"] = [1, 2.5, np.int64(7)]
    odd[1]["tags"] = ["a", None]
    odd[2]["customer.tier"] = "gold"
    odd[3]["amount"] = float("nan")
    odd[4]["amount"] = np.float32(101.5)
    odd[5][7] = "seven"
    odd[6]["express"] = np.bool_(True)
    deep: dict = {"leaf": 1}
    for _ in range(40):
        deep = {"n": deep}
    odd[7]["deep"] = deep
    model = anomaly.RecordModel.fit(records(400, 4), n_estimators=30)
    import json

    as_json = [json.loads(json.dumps(r, default=float)) for r in odd[8:]]
    np.testing.assert_array_equal(model.score(odd[8:])[0], model.score(pd.json_normalize(as_json))[0])
    with pytest.raises(anomaly.exceptions.InvalidRecordError, match="record 7: nested deeper"):
        engine.score_many("orders", odd)
    del odd[7]["deep"]
    outcomes = engine.score_many("orders", odd)
    got = engine.score_frame("orders", odd)
    np.testing.assert_array_equal(got.scores, scores_of(outcomes)[0])
    for i in range(8):
        assert engine.score("orders", odd[i])["score"] == got.scores[i], i
    # A record that contains itself, and a value of no JSON type, raise as they do one by one.
    loop: dict = {"a": 1}
    loop["self"] = loop
    with pytest.raises(anomaly.exceptions.InvalidRecordError, match="containing itself"):
        engine.score_frame("orders", [probe[0], loop])
    with pytest.raises(TypeError, match="cannot use a value of type object"):
        engine.score_frame("orders", [probe[0], {"amount": object()}])
    with pytest.raises(anomaly.exceptions.InvalidRecordError, match="record 1: expected a JSON object"):
        engine.score_frame("orders", [probe[0], [1, 2]])
    # Sparse records, each with fields of its own, beyond the columns' bound: read as records.
    sparse = [{f"f{i}": 1.0, "amount": 100.0} for i in range(3000)]
    np.testing.assert_array_equal(
        engine.score_frame("orders", sparse).scores,
        [engine.score("orders", r)["score"] for r in sparse],
    )


def test_record_model_scores_frames(trained):
    _, probe = trained
    model = anomaly.RecordModel.fit(records(500, 3), n_estimators=30)
    scores, flagged = model.score(probe)
    got_scores, got_flagged = model.score(pd.json_normalize(probe))
    np.testing.assert_array_equal(got_scores, scores)
    np.testing.assert_array_equal(got_flagged, flagged)


def test_learning_keys_and_empty_frames(trained):
    engine = anomaly.Engine(min_training_records=100)
    got = engine.score_frame("new", pd.DataFrame({"a": [1.0, 2.0]}))
    assert np.isnan(got.scores).all() and not got.is_anomaly.any()
    assert got.threshold is None and got.model_version is None
    empty = engine.score_frame("new", pd.DataFrame({"a": np.array([], dtype=float)}))
    assert empty.scores.shape == (0,)
    # An empty frame for a trained key still names its model; a frame without columns scores each row as {}.
    trained_engine, _ = trained
    empty = trained_engine.score_frame("orders", pd.DataFrame({"amount": np.array([], dtype=float)}))
    assert empty.scores.shape == (0,) and empty.model_version == trained_engine.model_info("orders")["version"]
    no_columns = trained_engine.score_frame("orders", pd.DataFrame(index=range(3)))
    np.testing.assert_array_equal(no_columns.scores, [trained_engine.score("orders", {})["score"]] * 3)


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


def test_score_many_answers_as_score_does_key_for_key(trained):
    engine, probe = trained
    for key in ["orders", "still-learning"]:
        many = engine.score_many(key, probe[:20])
        one_by_one = [engine.score(key, r) for r in probe[:20]]
        assert [list(d.items()) for d in many] == [list(d.items()) for d in one_by_one], key


def test_dict_reading_follows_the_record_path_in_corner_cases(trained):
    engine, probe = trained
    one = lambda r: engine.score("orders", r)["score"]  # noqa: E731
    # An empty key's nested field has the path of its key alone, as flatten names it.
    odd = [{"": {"amount": 1000.0}}, {"amount": 1.0, "": {"amount": 2.0}}]

    class Sneaky(list):
        def __iter__(self):
            return iter([1, 2, 3, 4, 5])

        def __len__(self):
            return 5

    odd.append({"tags": Sneaky([9.0])})
    assert list(engine.score_frame("orders", odd).scores) == [one(r) for r in odd]
    # A generator that reuses one dict: each record as it was when yielded.
    def reused():
        r = dict(probe[0])
        yield r
        r["amount"] = 10_000.0
        yield r

    expected = [one(probe[0]), one({**probe[0], "amount": 10_000.0})]
    assert list(engine.score_frame("orders", reused()).scores) == expected
    assert [o["score"] for o in engine.score_many("orders", reused())] == expected
    # One record with thousands of fields among many small ones: read as records, not as a column each.
    many = [{"amount": float(i % 50)} for i in range(60_000)]
    many[0] = {f"f{i}": 1.0 for i in range(3_000)}
    got = engine.score_frame("orders", many).scores
    assert [got[0], got[1], got[-1]] == [one(many[0]), one(many[1]), one(many[-1])]
    # A dict with more leaves than a record may have fails as it does one by one, naming it.
    wide = {f"f{i}": 1.0 for i in range(10_001)}
    with pytest.raises(anomaly.exceptions.InvalidRecordError) as one_by_one:
        engine.score("orders", wide)
    with pytest.raises(anomaly.exceptions.InvalidRecordError, match="record 1: ") as batch:
        engine.score_frame("orders", [probe[0], wide])
    assert str(batch.value).endswith(str(one_by_one.value).removeprefix("invalid record: "))
    # Dicts for a key still learning: NaN scores, and a record the engine refuses is refused.
    learning = engine.score_frame("still-learning", probe[:3])
    assert np.isnan(learning.scores).all() and learning.model_version is None
    with pytest.raises(anomaly.exceptions.InvalidRecordError, match="record 1: "):
        engine.score_frame("still-learning", [probe[0], wide])


def test_date_times_read_as_isoformat_gives_them():
    from anomaly._columns import _iso

    stamps = pd.Series(pd.to_datetime(["2024-03-01T10:00:00", "2024-03-01T10:00:00.250", None, "1900-01-01T12:00"], format="ISO8601"))
    for column in [stamps, stamps.dt.tz_localize("Europe/Amsterdam"), stamps.dt.tz_localize("UTC")]:
        expected = [None if pd.isna(t) else t.isoformat() for t in column]
        assert list(_iso(column)) == expected
    assert list(_iso(stamps.to_numpy())) == [None if pd.isna(t) else t.isoformat() for t in stamps]
    dates = pd.Series(pd.to_datetime(["2024-03-01", None])).astype("date32[pyarrow]")
    assert list(_iso(dates)) == ["2024-03-01", None]
