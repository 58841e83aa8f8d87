"""One isolation forest per group on Dask DataFrames (``pip install "anomaly[dask]"``): the same calls as
``anomaly.spark``, the same models table, the same scores.

>>> models = anomaly.dask.fit_groups(ddf, by="tenant", features=["latency", "bytes"], random_state=0).compute()
>>> scored = anomaly.dask.score_groups(ddf, models, by="tenant", features=["latency", "bytes"])

``fit_groups`` is a grouped apply (a group's rows meet in one task). ``score_groups`` shuffles the rows by group and
scores each partition with the models of the groups it holds; the models table (a pandas DataFrame, small: one row
per group) is sent once to each worker.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import pandas as pd

from . import _groups

__all__ = ["fit_groups", "score_groups", "score", "fit_records_groups", "score_records"]


def _dd() -> Any:
    try:
        import dask.dataframe as dd
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('anomaly.dask needs dask: pip install "anomaly[dask]"') from e
    return dd


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


def fit_groups(ddf: Any, by: Union[str, list], features: list, *, on_error: str = "skip", **params: Any) -> Any:
    """A Dask DataFrame of the models table ``anomaly.spark.fit_groups`` makes: group keys, ``model`` (snapshot
    bytes), ``version``, ``n_rows``, ``params``, ``error``; ``.compute()`` it to keep it (it is one row per group)."""
    _dd()
    by, features = _groups.names(by), _groups.names(features)
    _groups.check_on_error(on_error)
    _groups.check_columns(list(ddf.columns), by + features)
    _groups.IsolationForest(**params)  # unknown parameters fail here, not in every worker

    def fit(pdf: pd.DataFrame) -> pd.DataFrame:
        return _groups.fit_frame(pdf, by, features, params, on_error)

    out = ddf[by + features].groupby(by, group_keys=False).apply(fit, meta=_models_meta(ddf, by))
    return out.reset_index(drop=True)


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
    ``models`` (a pandas or Dask DataFrame made by ``fit_groups``), as ``anomaly.spark.score_groups`` adds them."""
    _dd()
    by, features = _groups.names(by), _groups.names(features)
    _groups.check_on_error(on_error)
    _groups.check_columns(list(ddf.columns), by + features)
    if hasattr(models, "compute"):
        models = models.compute()
    _groups.check_columns(list(models.columns), by + ["model", "error"])
    table = {
        _key(row[:-2]): (row[-2], row[-1])
        for row in models[by + ["model", "error"]].itertuples(index=False, name=None)
    }
    columns = list(ddf.columns)

    def score(pdf: pd.DataFrame, table: dict) -> pd.DataFrame:
        model, error = table.get(_key(tuple(pdf[c].iloc[0] for c in by)), (None, None)) if len(pdf) else (None, None)
        if model is None and error is not None and on_error == "raise":
            raise ValueError(f"the group's model could not be fitted: {error}")
        return _groups.score_frame(
            pdf[columns], model, features, error=error, attributions=attributions, on_error=on_error
        )

    return ddf.groupby(by, group_keys=False).apply(score, table, meta=_scored_meta(ddf, attributions))


def score(ddf: Any, model: Any, features: list, *, attributions: int = 0, on_error: str = "skip") -> Any:
    """``ddf`` with ``score``, ``is_anomaly`` and ``reason`` from one model (an ``anomaly.IsolationForest`` or its
    snapshot bytes), partition by partition."""
    _dd()
    features = _groups.names(features)
    _groups.check_on_error(on_error)
    _groups.check_columns(list(ddf.columns), features)
    data = model if isinstance(model, (bytes, bytearray)) else model.to_snapshot_bytes()
    _groups.load(data)

    def run(pdf: pd.DataFrame, data: bytes) -> pd.DataFrame:
        return _groups.score_frame(pdf, data, features, attributions=attributions, on_error=on_error)

    return ddf.map_partitions(run, bytes(data), meta=_scored_meta(ddf, attributions))


def fit_records_groups(
    ddf: Any, by: Union[str, list], column: str, *, on_error: str = "skip", **params: Any
) -> Any:
    """The record engine's models, one per group, as ``anomaly.spark.fit_records_groups`` makes them."""
    _dd()
    by = _groups.names(by)
    _groups.check_on_error(on_error)
    _groups.check_columns(list(ddf.columns), by + [column])

    def fit(pdf: pd.DataFrame) -> pd.DataFrame:
        return _groups.fit_records_frame(pdf, by, column, params, on_error)

    out = ddf[by + [column]].groupby(by, group_keys=False).apply(fit, meta=_models_meta(ddf, by))
    return out.reset_index(drop=True)


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
    _dd()
    by = _groups.names(by)
    _groups.check_on_error(on_error)
    _groups.check_columns(list(ddf.columns), by + [column])
    if hasattr(models, "compute"):
        models = models.compute()
    _groups.check_columns(list(models.columns), by + ["model", "error"])
    table = {
        _key(row[:-2]): (row[-2], row[-1])
        for row in models[by + ["model", "error"]].itertuples(index=False, name=None)
    }
    columns = list(ddf.columns)

    def score(pdf: pd.DataFrame, table: dict) -> pd.DataFrame:
        model, error = table.get(_key(tuple(pdf[c].iloc[0] for c in by)), (None, None)) if len(pdf) else (None, None)
        if model is None and error is not None and on_error == "raise":
            raise ValueError(f"the group's model could not be fitted: {error}")
        return _groups.score_records_frame(
            pdf[columns], model, column, error=error, explain=explain, on_error=on_error
        )

    return ddf.groupby(by, group_keys=False).apply(score, table, meta=_scored_meta(ddf, 0))


def _key(values: tuple) -> tuple:
    """A group key comparable across pandas and numpy scalars."""
    return tuple(v.item() if isinstance(v, np.generic) else v for v in values)
