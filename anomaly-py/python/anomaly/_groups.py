"""One model per group, over pandas frames: the work ``anomaly.spark`` and ``anomaly.dask`` hand to their workers.

Only snapshot bytes carry models between processes: a group's model is fitted here into the core's versioned
snapshot, and read back from it where the group's rows are scored, so no model is ever pickled. A group's rows are
put in a canonical order (sorted by their values) before fitting, so its model does not depend on the order a
shuffle delivered them in: the same rows fitted in one process in that order give the same model. Everything that can go wrong
with one group (a NaN in its rows, a snapshot another version wrote, values that are not numbers) is caught per
group and told in its rows (``on_error="skip"``, the default), or raised (``on_error="raise"``).
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from . import __version__
from ._forest import IsolationForest
from ._record_model import RecordModel
from .exceptions import AnomalyError, NonFiniteError

#: Columns of a models table, after the group keys.
MODEL_COLUMNS = ("model", "version", "n_rows", "params", "error")

#: Columns scoring adds to each row (``attributions`` only when asked for).
SCORE_COLUMNS = ("score", "is_anomaly", "reason")

#: The reason given to rows of a group without a model.
NO_MODEL = "no model for this group"

ON_ERROR = ("skip", "raise")


def names(columns: Any) -> list:
    """A column name or a sequence of them, as a list."""
    return [columns] if isinstance(columns, str) else list(columns)


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")


def check_columns(available: Sequence[str], wanted: Sequence[str]) -> None:
    """Raises ``KeyError`` naming the wanted columns that are absent, before any job starts."""
    missing = [c for c in wanted if c not in set(available)]
    if missing:
        raise KeyError(f"no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(available)})")


def check_no_clash(columns: Sequence[str], added: Sequence[str], what: str) -> None:
    """Raises ``ValueError`` when ``columns`` already hold a column the job adds."""
    clash = [c for c in added if c in set(columns)]
    if clash:
        raise ValueError(f"{what} already has column(s) {', '.join(repr(c) for c in clash)}, which this job adds")


def is_missing(v: Any) -> bool:
    """None, NaN, NaT or pd.NA."""
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def group_model(models: pd.DataFrame) -> tuple:
    """``(model, error)`` of a group from its rows of a models table: none, one, or several (refused)."""
    if models.empty:
        return None, None
    if len(models) > 1:
        return None, f"ValueError: the models table holds {len(models)} models for this group"
    model, error = models["model"].iloc[0], models["error"].iloc[0]
    return (None if is_missing(model) else model), (None if is_missing(error) else str(error))


def canonical(pdf: pd.DataFrame, columns: list) -> pd.DataFrame:
    """The rows sorted by ``columns`` (stably): rows that tie are equal in those columns, so their order cannot
    change a model fitted on them."""
    return pdf.sort_values(columns, kind="stable", na_position="last") if len(pdf) > 1 else pdf


def describe(e: BaseException) -> str:
    """An error as a row's reason: its class and message."""
    return f"{type(e).__name__}: {e}"


def model_row(pdf: pd.DataFrame, by: list, on_error: str, fit: Any) -> pd.DataFrame:
    """The models-table row of one group: its keys, the model's snapshot bytes and parameters (JSON) as
    ``fit(pdf)`` returns them, the package version, the rows, and, when the fit failed, the error instead."""
    keys = {c: [pdf[c].iloc[0] if len(pdf) else None] for c in by}
    row: dict = {"model": [None], "version": [__version__], "n_rows": [len(pdf)], "params": [None], "error": [None]}
    try:
        snapshot, params = fit(pdf)
        row["model"] = [snapshot]
        row["params"] = [json.dumps(params, sort_keys=True, default=str)]
    except (AnomalyError, ValueError, TypeError, OverflowError) as e:
        if on_error == "raise":
            raise
        row["error"] = [describe(e)]
    return pd.DataFrame({**keys, **row})


def fit_frame(pdf: pd.DataFrame, by: list, features: list, params: dict, on_error: str) -> pd.DataFrame:
    """The models-table row of one group (see :func:`model_row`), with an ``IsolationForest(**params)`` fitted on
    its ``features`` in canonical order."""

    def fit(g: pd.DataFrame) -> tuple:
        est = IsolationForest(**params).fit(canonical(g[features], features).astype(np.float64))
        return est.to_snapshot_bytes(), est.get_params()

    return model_row(pdf, by, on_error, fit)


def load(model: Any) -> IsolationForest:
    """A fitted estimator from snapshot bytes (or an estimator, as it is)."""
    if isinstance(model, IsolationForest):
        return model
    return IsolationForest.from_snapshot_bytes(bytes(model))


def score_frame(
    pdf: pd.DataFrame,
    model: Any,
    features: list,
    *,
    error: Optional[str] = None,
    attributions: int = 0,
    on_error: str = "skip",
) -> pd.DataFrame:
    """``pdf`` with ``score`` (the core's score in (0, 1], higher is more anomalous), ``is_anomaly``, ``reason`` and,
    when ``attributions`` > 0, that many features by contribution as JSON.

    ``reason``: for an anomaly, its score against the threshold (with ``attributions``, the full rationale in
    feature names); for a row without a score, why. ``model`` is snapshot bytes, an estimator, or None (``error``
    then says why; otherwise the reason is that the group has no model). A row whose features are not all finite
    numbers has no score and says why."""
    out = pdf.copy()
    n = len(pdf)
    score = np.full(n, np.nan)
    # is_anomaly as values and a mask of rows without a verdict (a nullable boolean column).
    flag = np.zeros(n, dtype=bool)
    no_verdict = np.ones(n, dtype=bool)
    reason: list = [None] * n
    tops: list = [None] * n

    def fail(message: str, rows: Any = slice(None)) -> None:
        for i in range(n)[rows] if isinstance(rows, slice) else rows:
            reason[i] = message

    if model is None:
        fail(error or NO_MODEL)
    else:
        try:
            est = load(model)
            x = pdf[features].astype(np.float64).to_numpy()
            finite = np.isfinite(x).all(axis=1)
            bad = np.flatnonzero(~finite)
            for i in bad:
                j = int(np.flatnonzero(~np.isfinite(x[i]))[0])
                reason[i] = f"NonFiniteError: {features[j]!r} is {x[i][j]}, not a finite number"
            if len(bad) and on_error == "raise":
                raise NonFiniteError(reason[bad[0]])
            good = np.flatnonzero(finite)
            if len(good):
                # With the column names the model was fitted with, if any (else as a plain matrix, as fitted).
                named = hasattr(est, "feature_names_in_")
                xg = pd.DataFrame(x[good], columns=features) if named else x[good]
                s = -est.score_samples(xg)
                # predict's rule (score_samples - offset_ < 0), without scoring twice.
                threshold = -est.offset_
                is_anomaly = s > threshold
                score[good] = s
                flag[good] = is_anomaly
                no_verdict[good] = False
                for i, si in zip(good[is_anomaly].tolist(), s[is_anomaly].tolist()):
                    reason[i] = f"score {si:.4f} exceeds the threshold {threshold:.4f}"
                if attributions > 0:
                    explanations = est.explain(xg)
                    for i, e in zip(good, explanations):
                        if e.is_anomaly:
                            reason[i] = e.rationale
                        tops[i] = json.dumps(
                            [
                                {"feature": a.label, "value": a.value, "contribution": a.contribution}
                                for a in e.attributions[:attributions]
                            ]
                        )
        except (AnomalyError, ValueError, TypeError, KeyError) as e:
            if on_error == "raise":
                raise
            score[:] = np.nan
            no_verdict[:] = True
            tops = [None] * n
            fail(describe(e))
    out["score"] = pd.array(score, dtype="float64")
    out["is_anomaly"] = pd.arrays.BooleanArray(flag, no_verdict)
    out["reason"] = pd.array(reason, dtype="object")
    if attributions > 0:
        out["attributions"] = pd.array(tops, dtype="object")
    return out


def plain(v: Any) -> Any:
    """A value of a record as JSON-like Python: arrays as lists, dates and times as ISO text, NA as None."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if is_missing(v):
        return None
    return v


def record_of(v: Any) -> Optional[dict]:
    """One record: JSON text parsed, a struct (a dict, or a Row) made plain; None for a null."""
    if is_missing(v):
        return None
    if isinstance(v, (str, bytes)):
        r = json.loads(v)
    elif hasattr(v, "asDict"):
        r = v.asDict(recursive=True)
    else:
        r = v
    if not isinstance(r, dict):
        raise TypeError(f"a record must be a JSON object, not {type(r).__name__}")
    return plain(r)


def record_key(v: Any) -> str:
    """A record's text, which orders a group's records canonically."""
    return v if isinstance(v, str) else json.dumps(plain(v), sort_keys=True, default=str)


def fit_records_frame(pdf: pd.DataFrame, by: list, column: str, params: dict, on_error: str) -> pd.DataFrame:
    """As :func:`fit_frame`, with a record model (``RecordModel.fit(records, **params)``) over the records in
    ``column`` (JSON text or structs), in canonical order; null records are left out."""

    def fit(g: pd.DataFrame) -> tuple:
        values = sorted((v for v in g[column] if not is_missing(v)), key=record_key)
        model = RecordModel.fit([record_of(v) for v in values], **params)
        return model.to_snapshot_bytes(), {**params, "roles": model.roles}

    return model_row(pdf, by, on_error, fit)


def score_records_frame(
    pdf: pd.DataFrame,
    model: Any,
    column: str,
    *,
    error: Optional[str] = None,
    explain: bool = False,
    on_error: str = "skip",
) -> pd.DataFrame:
    """As :func:`score_frame`, with a record model's snapshot bytes over the records in ``column``: a row whose
    record is null or cannot be read has no score and says why, the others are scored; with ``explain``, an
    anomaly's reason is its rationale in field names."""
    out = pdf.copy()
    n = len(pdf)
    score = np.full(n, np.nan)
    flagged: list = [None] * n
    reason: list = [error or NO_MODEL] * n if model is None else [None] * n
    if model is not None:
        try:
            m = model if isinstance(model, RecordModel) else RecordModel.from_snapshot_bytes(bytes(model))
            records, rows = [], []
            for i, v in enumerate(pdf[column]):
                try:
                    r = record_of(v)
                except (ValueError, TypeError) as e:
                    if on_error == "raise":
                        raise
                    reason[i] = describe(e)
                    continue
                if r is None:
                    reason[i] = "no record (null)"
                    continue
                records.append(r)
                rows.append(i)
            if records:
                s, a = m.score(records)
                for i, r, si, ai in zip(rows, records, s, a):
                    score[i] = si
                    flagged[i] = bool(ai)
                    if ai:
                        reason[i] = (
                            m.explain(r)["rationale"]
                            if explain
                            else f"score {si:.4f} exceeds the threshold {m.threshold:.4f}"
                        )
        except (AnomalyError, ValueError, TypeError, KeyError) as e:
            if on_error == "raise":
                raise
            score[:] = np.nan
            flagged = [None] * n
            reason = [describe(e)] * n
    out["score"] = pd.array(score, dtype="float64")
    out["is_anomaly"] = pd.array(flagged, dtype="boolean")
    out["reason"] = pd.array(reason, dtype="object")
    return out


def check_record_params(params: dict) -> None:
    """Raises ``TypeError`` for a parameter ``RecordModel.fit`` does not take, before any job starts."""
    import inspect

    inspect.signature(RecordModel.fit).bind([], **params)
