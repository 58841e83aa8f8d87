"""``anomaly.dask`` on a ``LocalCluster`` of worker processes: the models table and the scores of
``anomaly.spark``, bit for bit the same models as in one process. Skipped, saying so, where dask is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import anomaly
from anomaly import _groups

dd = pytest.importorskip("dask.dataframe", reason="dask is not installed (scripts/test-python puts it in .venv-spark)")
distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")

import anomaly.dask  # noqa: E402

FEATURES = ["a", "b"]
PARAMS = {"random_state": 0, "n_estimators": 50}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def frame(groups: int = 4, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    parts = []
    for g in range(groups):
        x = rng.normal(5 * g, 1 + g, (n, 2))
        x[0] = [5 * g + 30, -20]
        parts.append(pd.DataFrame({"tenant": f"t{g}", "a": x[:, 0], "b": x[:, 1]}))
    return pd.concat(parts, ignore_index=True)


def test_dask_models_and_scores_equal_one_process(client):
    pdf = frame()
    ddf = dd.from_pandas(pdf, npartitions=3)
    models = anomaly.dask.fit_groups(ddf, "tenant", FEATURES, **PARAMS).compute()
    table = models.set_index("tenant")
    scored = anomaly.dask.score_groups(ddf, models, "tenant", FEATURES).compute()
    assert len(scored) == len(pdf)
    for tenant, g in pdf.groupby("tenant"):
        est = anomaly.IsolationForest(**PARAMS).fit(g[FEATURES].sort_values(FEATURES, kind="stable"))
        assert bytes(table.loc[tenant, "model"]) == est.to_snapshot_bytes()
        got = scored.loc[g.index, "score"].to_numpy(dtype=float)
        assert np.array_equal(got, -est.score_samples(g[FEATURES]))
    one = anomaly.dask.score(ddf, anomaly.IsolationForest(**PARAMS).fit(pdf[FEATURES]), FEATURES).compute()
    assert one["score"].notna().all() and len(one) == len(pdf)


def test_dask_bad_groups_are_told_per_row(client):
    pdf = frame(groups=3)
    pdf.loc[pdf["tenant"] == "t1", "b"] = np.nan
    ddf = dd.from_pandas(pdf, npartitions=2)
    models = anomaly.dask.fit_groups(ddf, "tenant", FEATURES, **PARAMS).compute().set_index("tenant")
    assert models.loc["t1", "model"] is None and models.loc["t1", "error"].startswith("NonFiniteError")
    partial = models.drop(index="t2").reset_index()
    scored = anomaly.dask.score_groups(ddf, partial, "tenant", FEATURES).compute()
    reasons = scored.groupby("tenant")["reason"].first()
    assert reasons["t2"] == _groups.NO_MODEL and reasons["t1"].startswith("NonFiniteError")
    with pytest.raises(KeyError):
        anomaly.dask.score_groups(ddf, partial, "tenant", ["a", "zz"])


def test_dask_keeps_rows_whose_key_is_null(client):
    pdf = frame(groups=2)
    pdf["tenant"] = pdf["tenant"].astype(object)
    pdf.loc[pdf["tenant"] == "t1", "tenant"] = None
    ddf = dd.from_pandas(pdf, npartitions=2)
    models = anomaly.dask.fit_groups(ddf, "tenant", FEATURES, **PARAMS).compute()
    assert len(models) == 2 and models["error"].isna().all()
    scored = anomaly.dask.score_groups(ddf, models, "tenant", FEATURES).compute()
    assert len(scored) == len(pdf) and scored["score"].notna().all()


def test_dask_record_models_per_group(client):
    rng = np.random.default_rng(4)
    recs = [{"shop": f"s{i % 2}", "record": {"amount": 100 + 20 * rng.random(), "n": int(i % 5)}} for i in range(400)]
    pdf = pd.DataFrame(
        {"shop": [r["shop"] for r in recs], "record": [__import__("json").dumps(r["record"]) for r in recs]}
    )
    ddf = dd.from_pandas(pdf, npartitions=2)
    models = anomaly.dask.fit_records_groups(ddf, "shop", "record", random_state=0).compute()
    assert models["error"].isna().all() and len(models) == 2
    scored = anomaly.dask.score_records(ddf, models, "shop", "record").compute()
    assert scored["score"].notna().all() and len(scored) == 400
