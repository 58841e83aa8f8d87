"""One isolation forest per group inside Apache Spark (``pip install "anomaly[spark]"``).

Spark distributes the groups; each worker fits or scores its groups with the native core, and only the models'
snapshot bytes travel (a binary column of an ordinary DataFrame, which can be saved as Parquet and read back). Scores
are the same bits as the same models give in one process.

>>> models = anomaly.spark.fit_groups(df, by="tenant", features=["latency", "bytes"], random_state=0)
>>> models.write.parquet("models.parquet")                       # later: spark.read.parquet("models.parquet")
>>> scored = anomaly.spark.score_groups(df, models, by="tenant", features=["latency", "bytes"])
>>> scored.filter("is_anomaly").select("tenant", "score", "reason").show()

What scales how: groups are independent (one task fits or scores a whole group, so a group must fit in a worker's
memory, while the number of groups is unbounded); a group's model learns from at most ``max_samples`` rows per
tree. ``score`` broadcasts one model to every partition instead.

pyspark 4.0 supports pandas 2 only (its Arrow conversion rejects pandas 3): run it with ``pandas<3``.
"""

from __future__ import annotations

from typing import Any, Iterator, Union

import pandas as pd

from . import _groups

__all__ = ["fit_groups", "score_groups", "score", "fit_records_groups", "score_records"]


def _added(attributions: int) -> list:
    return list(_groups.SCORE_COLUMNS) + (["attributions"] if attributions > 0 else [])


def _types() -> Any:
    try:
        from pyspark.sql import types
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('anomaly.spark needs pyspark: pip install "anomaly[spark]"') from e
    return types


def _models_schema(df: Any, by: list) -> Any:
    t = _types()
    return t.StructType(
        [df.schema[c] for c in by]
        + [
            t.StructField("model", t.BinaryType()),
            t.StructField("version", t.StringType()),
            t.StructField("n_rows", t.LongType()),
            t.StructField("params", t.StringType()),
            t.StructField("error", t.StringType()),
        ]
    )


def _scored_schema(df: Any, attributions: int) -> Any:
    t = _types()
    fields = list(df.schema.fields) + [
        t.StructField("score", t.DoubleType()),
        t.StructField("is_anomaly", t.BooleanType()),
        t.StructField("reason", t.StringType()),
    ]
    if attributions > 0:
        fields.append(t.StructField("attributions", t.StringType()))
    return t.StructType(fields)


def fit_groups(df: Any, by: Union[str, list], features: list, *, on_error: str = "skip", **params: Any) -> Any:
    """A Spark DataFrame with one row per group of ``df`` (grouped by ``by``): the group keys, ``model`` (snapshot
    bytes of an ``anomaly.IsolationForest(**params)`` fitted on the group's ``features``), ``version`` (of the
    package that wrote it), ``n_rows``, ``params`` (JSON) and ``error``. A group that cannot be fitted (a NaN in its
    rows, a value that is not a number) gets no model and its error, or fails the job with ``on_error="raise"``.
    A column missing from ``df`` raises ``KeyError`` at once."""
    by, features = _groups.names(by), _groups.names(features)
    _groups.check_on_error(on_error)
    _groups.check_columns(df.columns, by + features)
    _groups.check_no_clash(by, _groups.MODEL_COLUMNS, "the group keys")
    _groups.IsolationForest(**params)  # unknown parameters fail here, not in every worker

    def fit(pdf: pd.DataFrame) -> pd.DataFrame:
        return _groups.fit_frame(pdf, by, features, params, on_error)

    return df.select(*by, *features).groupBy(*by).applyInPandas(fit, schema=_models_schema(df, by))


def score_groups(
    df: Any,
    models: Any,
    by: Union[str, list],
    features: list,
    *,
    attributions: int = 0,
    on_error: str = "skip",
) -> Any:
    """``df`` with ``score`` (in (0, 1], higher is more anomalous), ``is_anomaly`` and ``reason`` (why an anomaly is
    one, or why a row has no score) from its group's model in ``models`` (a table ``fit_groups`` made, or read back
    from Parquet), and, with ``attributions=k``, the ``k`` features that weigh most, as JSON. Each group's rows meet
    its model in one task (a co-grouping: the model is not copied to every row). Rows of a group without a model,
    or whose model could not be fitted or read, keep a null score and say why, unless ``on_error="raise"``."""
    by, features = _groups.names(by), _groups.names(features)
    _groups.check_on_error(on_error)
    _groups.check_columns(df.columns, by + features)
    _groups.check_columns(models.columns, by + ["model", "error"])
    _groups.check_no_clash(df.columns, _added(attributions), "the table")
    columns = list(df.columns)

    def score(rows: pd.DataFrame, group_models: pd.DataFrame) -> pd.DataFrame:
        if rows.empty:
            return _groups.score_frame(rows[columns], None, features, attributions=attributions)
        model, error = _groups.group_model(group_models)
        if model is None and error is not None and on_error == "raise":
            raise ValueError(f"the group has no usable model: {error}")
        return _groups.score_frame(
            rows[columns], model, features, error=error, attributions=attributions, on_error=on_error
        )

    grouped_models = models.select(*by, "model", "error").groupBy(*by)
    return df.groupBy(*by).cogroup(grouped_models).applyInPandas(score, schema=_scored_schema(df, attributions))


def score(
    df: Any, model: Any, features: list, *, attributions: int = 0, on_error: str = "skip"
) -> Any:
    """``df`` with ``score``, ``is_anomaly`` and ``reason`` from one model (an ``anomaly.IsolationForest`` or its
    snapshot bytes) sent once to every partition; each partition reads it back once."""
    features = _groups.names(features)
    _groups.check_on_error(on_error)
    _groups.check_columns(df.columns, features)
    _groups.check_no_clash(df.columns, _added(attributions), "the table")
    data = bytes(model) if isinstance(model, (bytes, bytearray)) else model.to_snapshot_bytes()
    _groups.load(data)  # a snapshot that cannot be read fails here, not in every task

    # The bytes travel with the function (pyspark broadcasts a large one itself); each task reads them once.
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        est = _groups.load(data)
        for batch in batches:
            yield _groups.score_frame(batch, est, features, attributions=attributions, on_error=on_error)

    return df.mapInPandas(run, schema=_scored_schema(df, attributions))


def fit_records_groups(
    df: Any, by: Union[str, list], column: str, *, on_error: str = "skip", **params: Any
) -> Any:
    """The record engine's models, one per group: as :func:`fit_groups`, with an ``anomaly.RecordModel`` learnt from
    the records in ``column`` (JSON text or a struct column), which finds each field's role (categories, dates,
    identifiers, blanks). ``params``: ``roles``, ``n_estimators``, ``max_samples``, ``contamination``,
    ``random_state``."""
    by = _groups.names(by)
    _groups.check_on_error(on_error)
    _groups.check_columns(df.columns, by + [column])
    _groups.check_no_clash(by, _groups.MODEL_COLUMNS, "the group keys")
    _groups.check_record_params(params)

    def fit(pdf: pd.DataFrame) -> pd.DataFrame:
        return _groups.fit_records_frame(pdf, by, column, params, on_error)

    return df.select(*by, column).groupBy(*by).applyInPandas(fit, schema=_models_schema(df, by))


def score_records(
    df: Any,
    models: Any,
    by: Union[str, list],
    column: str,
    *,
    explain: bool = False,
    on_error: str = "skip",
) -> Any:
    """``df`` with ``score``, ``is_anomaly`` and ``reason`` from each row's group record model in ``models`` (made by
    :func:`fit_records_groups`); with ``explain``, an anomaly's reason is its rationale in field names."""
    by = _groups.names(by)
    _groups.check_on_error(on_error)
    _groups.check_columns(df.columns, by + [column])
    _groups.check_columns(models.columns, by + ["model", "error"])
    _groups.check_no_clash(df.columns, _added(0), "the table")
    columns = list(df.columns)

    def score(rows: pd.DataFrame, group_models: pd.DataFrame) -> pd.DataFrame:
        model, error = (None, None) if rows.empty else _groups.group_model(group_models)
        if model is None and error is not None and on_error == "raise":
            raise ValueError(f"the group has no usable model: {error}")
        return _groups.score_records_frame(
            rows[columns], model, column, error=error, explain=explain, on_error=on_error
        )

    grouped_models = models.select(*by, "model", "error").groupBy(*by)
    return df.groupBy(*by).cogroup(grouped_models).applyInPandas(score, schema=_scored_schema(df, 0))
