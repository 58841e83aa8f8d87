"""One isolation forest per group on Dask DataFrames (``pip install "anomaly[dask]"``): the same calls as
``anomaly.spark``, the same models table, the same scores.

>>> models = anomaly.dask.fit_groups(ddf, by="tenant", features=["latency", "bytes"], random_state=0).compute()
>>> scored = anomaly.dask.score_groups(ddf, models, by="tenant", features=["latency", "bytes"])

Both calls shuffle the rows so that each group sits in one partition, then work partition by partition, group by
group (rows whose key is null form a group of their own, as in Spark). The models table (a pandas DataFrame, one
row per group) is computed once and handed to every scoring task as one shared piece of the graph.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np
import pandas as pd

from . import _groups

__all__ = ["fit_groups", "score_groups", "score", "fit_records_groups", "score_records"]


def _dask() -> Any:
    try:
        import dask
        import dask.dataframe  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('anomaly.dask needs dask: pip install "anomaly[dask]"') from e
    return dask


def _models_meta(ddf: Any, by: list) -> pd.DataFrame:
    meta = {c: pd.Series(dtype=ddf[c].dtype) for c in by}
    meta.update(
        model=pd.Series(dtype=object),
        version=pd.Series(dtype=object),
        n_rows=pd.Series(dtype=np.int64),
        params=pd.Series(dtype=object),
        error=pd.Series(dtype=object),
    )
    return pd.DataFrame(meta)


def _scored_meta(ddf: Any, attributions: int) -> pd.DataFrame:
    meta = ddf._meta.copy()
    meta["score"] = pd.Series(dtype="float64")
    meta["is_anomaly"] = pd.Series(dtype="boolean")
    meta["reason"] = pd.Series(dtype=object)
    if attributions > 0:
        meta["attributions"] = pd.Series(dtype=object)
    return meta


def _per_group(pdf: pd.DataFrame, by: list, work: Callable[[pd.DataFrame], pd.DataFrame], meta: pd.DataFrame) -> Any:
    """``work`` on each group of one partition (null keys included), concatenated."""
    parts = [work(g) for _, g in pdf.groupby(by, sort=False, dropna=False)]
    return pd.concat(parts) if parts else meta.iloc[:0]


def fit_groups(ddf: Any, by: Union[str, list], features: list, *, on_error: str = "skip", **params: Any) -> Any:
    """A Dask DataFrame of the models table ``anomaly.spark.fit_groups`` makes: group keys, ``model`` (snapshot
    bytes), ``version``, ``n_rows``, ``params``, ``error``; ``.compute()`` it to keep it (it is one row per group)."""
    _dask()
    by, features = _groups.names(by), _groups.names(features)
    _groups.check_on_error(on_error)
    _groups.check_columns(list(ddf.columns), by + features)
    _groups.check_no_clash(by, _groups.MODEL_COLUMNS, "the group keys")
    _groups.IsolationForest(**params)  # unknown parameters fail here, not in every worker
    meta = _models_meta(ddf, by)

    def fit(pdf: pd.DataFrame) -> pd.DataFrame:
        return _per_group(pdf, by, lambda g: _groups.fit_frame(g, by, features, params, on_error), meta)

    return ddf[by + features].shuffle(on=by).map_partitions(fit, meta=meta).reset_index(drop=True)


def _table(models: Any, by: list) -> dict:
    if hasattr(models, "compute"):
        models = models.compute()
    _groups.check_columns(list(models.columns), by + ["model", "error"])
    table: dict = {}
    for row in models[by + ["model", "error"]].itertuples(index=False, name=None):
        key = _key(row[:-2])
        found = _groups.group_model(pd.DataFrame({"model": [row[-2]], "error": [row[-1]]}))
        table[key] = found if key not in table else (None, "ValueError: the models table holds 2 models for it")
    return table


def _score_with(
    ddf: Any, models: Any, by: list, score_group: Callable[[pd.DataFrame, Any, Any], pd.DataFrame], meta: Any
) -> Any:
    dask = _dask()
    shared = dask.delayed(_table(models, by), traverse=False)
    columns = list(ddf.columns)

    def score(pdf: pd.DataFrame, table: dict) -> pd.DataFrame:
        def one(g: pd.DataFrame) -> pd.DataFrame:
            model, error = table.get(_key(tuple(g[c].iloc[0] for c in by)), (None, None))
            return score_group(g[columns], model, error)

        return _per_group(pdf, by, one, meta)

    return ddf.shuffle(on=by).map_partitions(score, shared, meta=meta)


def score_groups(
    ddf: Any,
    models: Any,
    by: Union[str, list],
    features: list,
    *,
    attributions: int = 0,
    on_error: str = "skip",
) -> Any:
    """``ddf`` with ``score``, ``is_anomaly``, ``reason`` (and ``attributions``) from each row's group model in
    ``models`` (a pandas or Dask DataFrame made by ``fit_groups``), as ``anomaly.spark.score_groups`` adds them.
    Rows come back grouped, each with its original index."""
    by, features = _groups.names(by), _groups.names(features)
    _groups.check_on_error(on_error)
    _groups.check_columns(list(ddf.columns), by + features)
    _groups.check_no_clash(list(ddf.columns), _added(attributions), "the table")

    def score_group(g: pd.DataFrame, model: Any, error: Any) -> pd.DataFrame:
        if model is None and error is not None and on_error == "raise":
            raise ValueError(f"the group has no usable model: {error}")
        return _groups.score_frame(g, model, features, error=error, attributions=attributions, on_error=on_error)

    return _score_with(ddf, models, by, score_group, _scored_meta(ddf, attributions))


def score(ddf: Any, model: Any, features: list, *, attributions: int = 0, on_error: str = "skip") -> Any:
    """``ddf`` with ``score``, ``is_anomaly`` and ``reason`` from one model (an ``anomaly.IsolationForest`` or its
    snapshot bytes), partition by partition."""
    dask = _dask()
    features = _groups.names(features)
    _groups.check_on_error(on_error)
    _groups.check_columns(list(ddf.columns), features)
    _groups.check_no_clash(list(ddf.columns), _added(attributions), "the table")
    data = bytes(model) if isinstance(model, (bytes, bytearray)) else model.to_snapshot_bytes()
    _groups.load(data)

    def run(pdf: pd.DataFrame, data: bytes) -> pd.DataFrame:
        return _groups.score_frame(pdf, data, features, attributions=attributions, on_error=on_error)

    return ddf.map_partitions(run, dask.delayed(data), meta=_scored_meta(ddf, attributions))


def fit_records_groups(
    ddf: Any, by: Union[str, list], column: str, *, on_error: str = "skip", **params: Any
) -> Any:
    """The record engine's models, one per group, as ``anomaly.spark.fit_records_groups`` makes them."""
    _dask()
    by = _groups.names(by)
    _groups.check_on_error(on_error)
    _groups.check_columns(list(ddf.columns), by + [column])
    _groups.check_no_clash(by, _groups.MODEL_COLUMNS, "the group keys")
    _groups.check_record_params(params)
    meta = _models_meta(ddf, by)

    def fit(pdf: pd.DataFrame) -> pd.DataFrame:
        return _per_group(pdf, by, lambda g: _groups.fit_records_frame(g, by, column, params, on_error), meta)

    return ddf[by + [column]].shuffle(on=by).map_partitions(fit, meta=meta).reset_index(drop=True)


def score_records(
    ddf: Any,
    models: Any,
    by: Union[str, list],
    column: str,
    *,
    explain: bool = False,
    on_error: str = "skip",
) -> Any:
    """``ddf`` with ``score``, ``is_anomaly`` and ``reason`` from each row's group record model."""
    by = _groups.names(by)
    _groups.check_on_error(on_error)
    _groups.check_columns(list(ddf.columns), by + [column])
    _groups.check_no_clash(list(ddf.columns), _added(0), "the table")

    def score_group(g: pd.DataFrame, model: Any, error: Any) -> pd.DataFrame:
        if model is None and error is not None and on_error == "raise":
            raise ValueError(f"the group has no usable model: {error}")
        return _groups.score_records_frame(g, model, column, error=error, explain=explain, on_error=on_error)

    return _score_with(ddf, models, by, score_group, _scored_meta(ddf, 0))


def _added(attributions: int) -> list:
    return list(_groups.SCORE_COLUMNS) + (["attributions"] if attributions > 0 else [])


def _key(values: tuple) -> tuple:
    """A group key comparable across pandas and numpy scalars, with every kind of missing value as None."""
    return tuple(None if _groups.is_missing(v) else (v.item() if isinstance(v, np.generic) else v) for v in values)
