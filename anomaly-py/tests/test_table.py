"""``anomaly.read_table``: files and DataFrames as the matrix ``IsolationForest`` takes, encoded as ``detect`` does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import anomaly
from conftest import REPO

CARDIO = REPO / "examples" / "data" / "cardio" / "cardio.csv"
PARQUET = REPO / "anomaly-core" / "tests" / "data" / "table" / "sales.parquet"


def orders(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    amount = 100 + 50 * rng.random(n)
    amount[[10, 20]] = np.nan
    return pd.DataFrame(
        {
            "order_id": np.arange(5000, 5000 + n),
            "created": pd.Timestamp("2024-03-04 09:00") + pd.to_timedelta(rng.integers(0, 4 * 24 * 60, n), "min"),
            "region": rng.choice(["north", "south", "east", "west"], n),
            "amount": amount,
            "express": rng.random(n) < 0.3,
        }
    )


def test_a_numeric_table_is_its_columns_bit_for_bit_with_or_without_an_identifier(tmp_path):
    values = pd.read_csv(CARDIO)
    t = anomaly.read_table(CARDIO)
    assert t.X.dtype == np.float64 and t.X.shape == (1831, 21)
    assert np.array_equal(t.X, values.to_numpy())
    assert t.feature_names == list(values.columns)
    assert set(t.roles.values()) == {"measurement"}
    with_id = values.copy()
    with_id.insert(0, "id", np.arange(1, len(values) + 1))
    with_id.to_csv(tmp_path / "with_id.csv", index=False, float_format="%.17g")
    t2 = anomaly.read_table(tmp_path / "with_id.csv")
    assert t2.roles["id"] == "identifier"
    assert np.array_equal(t2.X, t.X)
    # A DataFrame gives the same matrix as the file.
    assert np.array_equal(anomaly.read_table(with_id).X, t.X)


def test_mixed_columns_get_roles_and_features(tmp_path):
    df = orders()
    path = tmp_path / "orders.csv"
    df.to_csv(path, index=False)
    t = anomaly.read_table(path)
    assert t.roles == {
        "order_id": "identifier",
        "created": "timestamp",
        "region": "category",
        "amount": "measurement",
        "express": "measurement",
    }
    for name in ["created.hour_sin", "created.weekday_cos", "amount", "amount.missing", "region.freq"]:
        assert name in t.feature_names, name
    assert t.X.shape == (300, len(t.feature_names))
    assert np.isfinite(t.X).all()
    missing = t.X[:, t.feature_names.index("amount.missing")]
    assert missing[[10, 20]].tolist() == [1.0, 1.0] and missing.sum() == 2
    # The DataFrame itself (datetime64, bool, NaN) reads as its CSV does.
    from_frame = anomaly.read_table(df)
    assert from_frame.roles == t.roles and from_frame.feature_names == t.feature_names
    assert np.array_equal(from_frame.X, t.X)
    # Ready for the estimator, which keeps scikit-learn's strict input rules.
    scores = anomaly.IsolationForest(random_state=0).fit(t.X).score_samples(t.X)
    assert scores.shape == (300,)


def test_roles_can_be_pinned():
    df = orders()
    t = anomaly.read_table(df, roles={"region": "ignore", "order_id": "measurement"})
    assert t.roles["region"] == "ignore" and t.rules["region"] == "pinned"
    assert "order_id" in t.feature_names
    assert not any(n.startswith("region") for n in t.feature_names)
    with pytest.raises(anomaly.InvalidParameterError):
        anomaly.read_table(df, roles={"region": "colour"})


def test_json_lines_parquet_and_delimiters(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"x": 1, "c": {"d": "u"}}\n{"x": 2, "c": {"d": "v"}}\n{"x": 3}\n')
    t = anomaly.read_table(tmp_path / "a.jsonl")
    assert "c.d" in t.roles and t.X.shape[0] == 3
    t = anomaly.read_table(PARQUET)
    assert list(t.roles) == ["id", "when", "amount", "region", "express", "day"]
    assert t.roles["when"] == "timestamp" and t.X.shape[0] == 3
    (tmp_path / "semi.txt").write_text("a;b\n1;2\n3;4\n5;6\n")
    assert anomaly.read_table(tmp_path / "semi.txt").X.tolist() == [[1, 2], [3, 4], [5, 6]]
    (tmp_path / "tabs.data").write_text("a\tb\n1\t2\n3\t4\n")
    t = anomaly.read_table(tmp_path / "tabs.data", format="csv", delimiter="\t")
    assert t.X.tolist() == [[1, 2], [3, 4]]


def test_errors_are_typed(tmp_path):
    with pytest.raises(anomaly.TableError) as e:
        anomaly.read_table(tmp_path / "missing.csv")
    assert e.value.file.endswith("missing.csv") and "cannot read" in e.value.reason
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(anomaly.TableError, match="row 2 has 1 fields"):
        anomaly.read_table(tmp_path / "ragged.csv")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(anomaly.TableError, match="unknown table format"):
        anomaly.read_table(tmp_path / "x.xlsx")
    with pytest.raises(anomaly.InvalidParameterError):
        anomaly.read_table(tmp_path / "x.xlsx", format="xml")
    with pytest.raises(ValueError):
        anomaly.read_table(tmp_path / "ragged.csv", delimiter=";;")
    with pytest.raises(TypeError):
        anomaly.read_table(42)
    with pytest.raises(anomaly.EmptyInputError):
        anomaly.read_table(pd.DataFrame({"a": []}))


def test_dataframe_values_read_as_their_csv_would():
    import decimal

    n = 120
    df = pd.DataFrame(
        {
            "f": pd.array([1.5, None, 3.0] * (n // 3), dtype="Float64"),
            "i": pd.array([1, None, 3] * (n // 3), dtype="Int64"),
            "inf": [np.inf, 1.0, 2.0] * (n // 3),
            "dec": [decimal.Decimal("1.25"), decimal.Decimal("2.5"), decimal.Decimal("3")] * (n // 3),
            "cat": pd.Categorical(["a", "b", None] * (n // 3)),
            "when": pd.to_datetime(["2024-03-04 09:00", None, "2024-03-05 10:00"] * (n // 3), utc=True),
        }
    )
    t = anomaly.read_table(df)
    assert t.roles == {
        "f": "measurement",
        "i": "measurement",
        "inf": "measurement",
        "dec": "measurement",
        "cat": "category",
        "when": "timestamp",
    }
    x = dict(zip(t.feature_names, t.X.T))
    # Missing values of every kind are missing; an infinity, as "inf" in a CSV file, is a value of another type.
    assert x["f.missing"].tolist() == [0.0, 1.0, 0.0] * (n // 3)
    assert x["i.missing"].tolist() == [0.0, 1.0, 0.0] * (n // 3)
    assert x["inf.missing"].tolist() == [1.0, 0.0, 0.0] * (n // 3)
    assert x["dec"].tolist() == [1.25, 2.5, 3.0] * (n // 3)
    assert x["when.missing"].tolist() == [0.0, 1.0, 0.0] * (n // 3)
    assert x["cat.missing"].tolist() == [0.0, 0.0, 1.0] * (n // 3)
