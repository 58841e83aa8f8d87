"""Per-group models over pandas frames: what ``anomaly.spark`` and ``anomaly.dask`` run in their workers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import anomaly
from anomaly import _groups


def frame(groups: int = 3, n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for g in range(groups):
        x = rng.normal(10 * g, 1 + g, (n, 2))
        x[0] = [10 * g + 40, -30]  # one outlier per group
        parts.append(pd.DataFrame({"tenant": f"t{g}", "a": x[:, 0], "b": x[:, 1]}))
    return pd.concat(parts, ignore_index=True)


def test_a_group_model_scores_as_the_same_model_in_one_process():
    df = frame()
    params = {"random_state": 0, "n_estimators": 50}
    for tenant, pdf in df.groupby("tenant"):
        row = _groups.fit_frame(pdf, ["tenant"], ["a", "b"], params, "skip")
        assert row["tenant"].tolist() == [tenant] and row["error"].isna().all()
        assert row["n_rows"].tolist() == [200] and row["version"].tolist() == [anomaly.__version__]
        assert json.loads(row["params"].iloc[0])["n_estimators"] == 50
        scored = _groups.score_frame(pdf, row["model"].iloc[0], ["a", "b"])
        # The group's rows are fitted in canonical order (sorted by their values): so does the one-process fit.
        local = anomaly.IsolationForest(**params).fit(pdf[["a", "b"]].sort_values(["a", "b"], kind="stable"))
        assert bytes(row["model"].iloc[0]) == local.to_snapshot_bytes()
        shuffled = _groups.fit_frame(pdf.sample(frac=1, random_state=1), ["tenant"], ["a", "b"], params, "skip")
        assert bytes(shuffled["model"].iloc[0]) == local.to_snapshot_bytes()
        expected = -local.score_samples(pdf[["a", "b"]])
        assert np.array_equal(scored["score"].to_numpy(dtype=float), expected)  # bit for bit
        assert scored["is_anomaly"].tolist() == (local.predict(pdf[["a", "b"]]) == -1).tolist()
        assert scored["is_anomaly"].iloc[0] and scored["reason"].iloc[0].startswith("score ")
        # A non-default index (Dask keeps the table's) changes nothing.
        again = _groups.score_frame(pdf.set_index(pdf.index * 3 + 7), row["model"].iloc[0], ["a", "b"])
        assert np.array_equal(again["score"].to_numpy(dtype=float), expected)
        assert scored.loc[~scored["is_anomaly"], "reason"].isna().all()


def test_bad_groups_are_told_per_row_or_raised():
    df = frame(groups=1)
    df.loc[5, "a"] = np.nan
    row = _groups.fit_frame(df, ["tenant"], ["a", "b"], {"random_state": 0}, "skip")
    assert row["model"].isna().all() and row["error"].iloc[0].startswith("NonFiniteError")
    with pytest.raises(anomaly.NonFiniteError):
        _groups.fit_frame(df, ["tenant"], ["a", "b"], {}, "raise")
    # Scoring: the row with the NaN says why; the others are scored.
    model = _groups.fit_frame(df.drop(index=5), ["tenant"], ["a", "b"], {}, "skip")["model"].iloc[0]
    scored = _groups.score_frame(df, model, ["a", "b"])
    assert pd.isna(scored.loc[5, "score"]) and scored.loc[5, "reason"].startswith("NonFiniteError: 'a'")
    assert scored["score"].notna().sum() == len(df) - 1
    # No model, a model that could not be fitted, a snapshot that cannot be read.
    assert _groups.score_frame(df, None, ["a", "b"])["reason"].eq(_groups.NO_MODEL).all()
    assert _groups.score_frame(df, None, ["a", "b"], error="E: x")["reason"].eq("E: x").all()
    broken = _groups.score_frame(df, b"not a snapshot", ["a", "b"])
    assert broken["score"].isna().all() and broken["reason"].str.startswith("CorruptModelError").all()
    with pytest.raises(anomaly.CorruptModelError):
        _groups.score_frame(df, b"not a snapshot", ["a", "b"], on_error="raise")
    # A snapshot from a newer, incompatible version of the format is refused the same way.
    newer = bytes(model).replace(b'"version":2', b'"version":99', 1)
    assert newer != bytes(model)
    reasons = _groups.score_frame(df, newer, ["a", "b"])["reason"]
    assert reasons.str.startswith("CorruptModelError").all() and reasons.str.contains("99").all()


def test_attributions_on_request():
    df = frame(groups=1)
    model = _groups.fit_frame(df, ["tenant"], ["a", "b"], {"random_state": 0}, "skip")["model"].iloc[0]
    scored = _groups.score_frame(df, model, ["a", "b"], attributions=1)
    top = json.loads(scored["attributions"].iloc[0])
    assert len(top) == 1 and top[0]["feature"] in ("a", "b") and top[0]["contribution"] > 0
    assert scored["attributions"].notna().all()
    # With attributions, an anomaly's reason is the full rationale.
    assert scored["reason"].iloc[0].startswith("Anomalous")


def test_argument_checks():
    with pytest.raises(KeyError, match="'c'"):
        _groups.check_columns(["a", "b"], ["a", "c"])
    with pytest.raises(ValueError):
        _groups.check_on_error("ignore")
    with pytest.raises(ValueError, match="'score'"):
        _groups.check_no_clash(["a", "score"], _groups.SCORE_COLUMNS, "the table")
    two = pd.DataFrame({"model": [b"x", b"y"], "error": [None, None]})
    assert _groups.group_model(two)[1].startswith("ValueError: the models table holds 2")
    assert _groups.group_model(pd.DataFrame({"model": [None], "error": [pd.NA]})) == (None, None)


def test_models_fitted_on_plain_arrays_score_without_warnings():
    df = frame(groups=1)
    est = anomaly.IsolationForest(random_state=0).fit(df[["a", "b"]].to_numpy())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scored = _groups.score_frame(df, est.to_snapshot_bytes(), ["a", "b"])
    assert np.array_equal(scored["score"].to_numpy(dtype=float), -est.score_samples(df[["a", "b"]].to_numpy()))


def orders(n: int = 300, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = [
        {"amount": float(100 + 20 * rng.random()), "country": str(rng.choice(["FR", "DE"])), "id": f"o{i}"}
        for i in range(n)
    ]
    out[0] = {"amount": 9999.0, "country": "KP", "id": "o0"}
    return out


def test_record_models_per_group_as_json_text_or_dicts():
    recs = orders()
    pdf = pd.DataFrame({"shop": "s1", "record": [json.dumps(r) for r in recs]})
    row = _groups.fit_records_frame(pdf, ["shop"], "record", {"random_state": 0}, "skip")
    assert row["error"].isna().all() and json.loads(row["params"].iloc[0])["roles"]["id"] == "identifier"
    # The same model, fitted on the records in canonical order (its snapshot differs only in its fit time).
    local = anomaly.RecordModel.fit([json.loads(t) for t in sorted(pdf["record"])], random_state=0)
    scored = _groups.score_records_frame(pdf, row["model"].iloc[0], "record", explain=True)
    expected, flagged = local.score(recs)
    assert np.array_equal(scored["score"].to_numpy(dtype=float), expected)
    assert scored["is_anomaly"].tolist() == flagged.tolist()
    assert scored["is_anomaly"].iloc[0] and "amount" in scored["reason"].iloc[0]
    # Dicts (a struct column) score as their JSON text does.
    as_dicts = _groups.score_records_frame(pdf.assign(record=recs), row["model"].iloc[0], "record")
    assert np.array_equal(as_dicts["score"].to_numpy(dtype=float), expected)
    # Bytes of an isolation forest are not a record model: refused per row.
    forest = anomaly.IsolationForest(random_state=0).fit(np.random.default_rng(0).normal(size=(50, 2)))
    wrong = _groups.score_records_frame(pdf, forest.to_snapshot_bytes(), "record")
    assert wrong["reason"].str.startswith("CorruptModelError").all()
    bad = _groups.fit_records_frame(pdf.assign(record="not json"), ["shop"], "record", {}, "skip")
    assert bad["model"].isna().all() and bad["error"].iloc[0].startswith("JSONDecodeError")
    # One unreadable or null record is told on its row; the others are scored.
    mixed = pdf.copy()
    mixed.loc[3, "record"] = "[1, 2]"
    mixed.loc[4, "record"] = None
    scored = _groups.score_records_frame(mixed, row["model"].iloc[0], "record")
    assert scored.loc[3, "reason"].startswith("TypeError") and scored.loc[4, "reason"] == "no record (null)"
    assert scored["score"].isna().sum() == 2
    # Struct values with arrays, dates and NA, as Spark and Dask hand them over, are made plain.
    nested = {"amount": 1.0, "tags": np.array(["a", "b"]), "at": pd.Timestamp("2024-01-01"), "x": pd.NA}
    assert _groups.record_of(nested) == {"amount": 1.0, "tags": ["a", "b"], "at": "2024-01-01T00:00:00", "x": None}
    with pytest.raises(TypeError):
        _groups.check_record_params({"n_estimator": 3})


def test_record_model_round_trip():
    recs = orders()
    m = anomaly.RecordModel.fit(recs, roles={"country": "ignore"}, n_estimators=50, random_state=1)
    assert m.roles["country"] == "ignore" and m.trained_on == 300 and 0 < m.threshold <= 1
    again = anomaly.RecordModel.from_snapshot_bytes(m.to_snapshot_bytes())
    assert np.array_equal(again.score(recs)[0], m.score(recs)[0])
    assert again.explain(recs[0])["verdict"]["is_anomaly"]
    with pytest.raises(anomaly.CorruptModelError):
        anomaly.RecordModel.from_snapshot_bytes(b"{}")
