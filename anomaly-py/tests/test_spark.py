"""``anomaly.spark`` in Spark's local mode: per-group models fitted and scored by Spark give the bits the same models
give in one process. Runs where pyspark and Java are installed (``scripts/test-python`` sets up ``.venv-spark`` with
pyspark 4.0 and pandas 2, as pyspark 4.0 does not support pandas 3); skipped, saying what is missing, elsewhere."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

import anomaly
from anomaly import _groups

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (scripts/test-python puts it in .venv-spark)")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Java is not installed: Spark needs a JDK (17 or 21)", allow_module_level=True)

import anomaly.spark  # noqa: E402

FEATURES = ["a", "b"]
PARAMS = {"random_state": 0, "n_estimators": 50}


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    # The workers run this interpreter, which has the package installed.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("anomaly-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def frame(groups: int = 4, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    parts = []
    for g in range(groups):
        x = rng.normal(5 * g, 1 + g, (n, 2))
        x[0] = [5 * g + 30, -20]
        parts.append(pd.DataFrame({"tenant": f"t{g}", "a": x[:, 0], "b": x[:, 1]}))
    return pd.concat(parts, ignore_index=True)


def local_scores(pdf: pd.DataFrame) -> dict:
    """Each group's model fitted in one process on its rows in canonical order (sorted by their values), and its
    scores of the group's rows in table order."""
    out = {}
    for tenant, g in pdf.groupby("tenant"):
        est = anomaly.IsolationForest(**PARAMS).fit(g[FEATURES].astype(float).sort_values(FEATURES, kind="stable"))
        out[tenant] = (est.to_snapshot_bytes(), -est.score_samples(g[FEATURES].astype(float)))
    return out


def test_spark_scores_equal_one_process_bit_for_bit(spark, tmp_path):
    pdf = frame()
    # Every group spread over several partitions: the shuffle delivers its rows in an order the fit must not see.
    df = spark.createDataFrame(pdf).repartition(5)
    models = anomaly.spark.fit_groups(df, "tenant", FEATURES, **PARAMS)
    table = models.toPandas().set_index("tenant")
    expected = local_scores(pdf)
    assert sorted(table.index) == sorted(expected)
    for tenant, (snapshot, _) in expected.items():
        assert bytes(table.loc[tenant, "model"]) == snapshot
        assert table.loc[tenant, "n_rows"] == 300 and table.loc[tenant, "version"] == anomaly.__version__
    # Saved as Parquet and read back, the models score the same.
    path = str(tmp_path / "models.parquet")
    models.write.parquet(path)
    scored = anomaly.spark.score_groups(df, spark.read.parquet(path), "tenant", FEATURES).toPandas()
    assert len(scored) == len(pdf)
    for tenant, g in scored.groupby("tenant"):
        merged = g.merge(pdf.reset_index(), on=["tenant", "a", "b"]).sort_values("index")
        assert np.array_equal(merged["score"].to_numpy(dtype=float), expected[tenant][1])
    first_rows = scored[scored["a"].isin(pdf.groupby("tenant")["a"].first())]
    assert first_rows["is_anomaly"].all() and first_rows["reason"].str.startswith("score ").all()
    # A column the job adds may not be in the table already.
    with pytest.raises(ValueError, match="'score'"):
        anomaly.spark.score_groups(df.withColumnRenamed("b", "score"), models, "tenant", ["a", "score"])


def test_one_model_broadcast_to_every_partition(spark):
    pdf = frame(groups=1)
    est = anomaly.IsolationForest(**PARAMS).fit(pdf[FEATURES])
    df = spark.createDataFrame(pdf).repartition(3)
    scored = anomaly.spark.score(df, est, FEATURES, attributions=2).toPandas()
    merged = scored.merge(pdf.reset_index(), on=["tenant", "a", "b"]).sort_values("index")
    assert np.array_equal(merged["score"].to_numpy(dtype=float), -est.score_samples(pdf[FEATURES]))
    assert merged["attributions"].notna().all()


def test_bad_groups_fail_alone_unless_asked(spark):
    pdf = frame(groups=3)
    pdf.loc[pdf["tenant"] == "t1", "a"] = np.nan  # every row of t1
    df = spark.createDataFrame(pdf)
    models = anomaly.spark.fit_groups(df, "tenant", FEATURES, **PARAMS)
    table = models.toPandas().set_index("tenant")
    assert table.loc["t1", "model"] is None and table.loc["t1", "error"].startswith("NonFiniteError")
    assert table.loc["t0", "error"] is None
    # A group without a model (t2 dropped from the table), a group whose fit failed: told per row.
    partial = models.filter("tenant != 't2'")
    scored = anomaly.spark.score_groups(df, partial, "tenant", FEATURES).toPandas()
    reasons = scored.groupby("tenant")["reason"].first()
    assert reasons["t2"] == _groups.NO_MODEL and reasons["t1"].startswith("NonFiniteError")
    assert scored.loc[scored["tenant"] == "t0", "score"].notna().all()
    # A missing column is refused at once; on_error="raise" fails the job.
    with pytest.raises(KeyError, match="'c'"):
        anomaly.spark.fit_groups(df, "tenant", ["a", "c"])
    with pytest.raises(Exception, match="NonFiniteError"):
        anomaly.spark.fit_groups(df, "tenant", FEATURES, on_error="raise").collect()


def test_record_models_per_group(spark):
    rng = np.random.default_rng(3)
    rows = []
    for shop in ["s1", "s2"]:
        for i in range(200):
            rows.append({"shop": shop, "record": f'{{"amount": {100 + 20 * rng.random()}, "id": "{shop}-{i}"}}'})
    rows[0]["record"] = '{"amount": 99999, "id": "s1-0"}'
    pdf = pd.DataFrame(rows)
    df = spark.createDataFrame(pdf)
    models = anomaly.spark.fit_records_groups(df, "shop", "record", random_state=0, n_estimators=50)
    scored = anomaly.spark.score_records(df, models, "shop", "record", explain=True).toPandas()
    for shop, g in pdf.groupby("shop"):
        local = anomaly.RecordModel.fit(
            [__import__("json").loads(r) for r in sorted(g["record"])], random_state=0, n_estimators=50
        )
        got = scored[scored["shop"] == shop].set_index("record").loc[g["record"], "score"].to_numpy(dtype=float)
        assert np.array_equal(got, local.score([__import__("json").loads(r) for r in g["record"]])[0])
    top = scored.sort_values("score", ascending=False).iloc[0]
    assert top["record"] == rows[0]["record"] and "amount" in top["reason"]
