"""``read_table``: a table as the numeric matrix ``IsolationForest`` takes, with feature names and column roles."""

from __future__ import annotations

import decimal
import math
import os
from typing import Any, Mapping, NamedTuple, Optional

import numpy as np

from . import _native


class Table(NamedTuple):
    """What :func:`read_table` returns.

    * ``X``: float64 array, one row per table row, one column per feature.
    * ``feature_names``: the name of each column of ``X`` (a column's name for a table of numbers; for other tables
      the vectorizer's names such as ``amount``, ``amount.missing``, ``created.hour_sin``, ``region#3``).
    * ``roles``: each table column's role (``measurement``, ``category``, ``timestamp``, ``identifier``, ``text`` or
      ``ignore``), in column order.
    * ``rules``: why each column has its role.
    """

    X: np.ndarray
    feature_names: list
    roles: dict
    rules: dict


def read_table(
    source: Any,
    *,
    format: Optional[str] = None,
    delimiter: Optional[str] = None,
    roles: Optional[Mapping[str, str]] = None,
) -> Table:
    """Reads a table and encodes it as ``detect`` does, ready for :class:`anomaly.IsolationForest`.

    ``source`` is a path (CSV with the delimiter sniffed, JSON lines, Parquet; ``format`` is ``"csv"``, ``"jsonl"``
    or ``"parquet"`` when the extension does not say) or a pandas DataFrame. Column types are inferred from the
    data: numbers, booleans, dates and times (strings, epoch seconds or milliseconds named like a time, datetime
    columns), categories, identifiers, free text and blanks. ``roles`` pins a column's role
    (``{"id": "identifier"}``), by name, or dotted path for nested JSON.

    A table of numbers only (identifier columns aside) gives its columns as they are, in order, bit for bit; any
    other table gives the record vectorizer's features: categories hashed with their frequency, dates as hour and
    weekday on the unit circle, blanks imputed with a missing-value indicator, text by its length, identifiers set
    aside. ``IsolationForest`` keeps scikit-learn's strict input rules: this is where mixed tables are encoded.

    Raises ``TableError`` for a file that cannot be read, ``InvalidParameterError`` for an unknown role or format.

    >>> import anomaly, pandas as pd
    >>> t = anomaly.read_table(pd.DataFrame({"id": range(100), "x": [float(i % 7) for i in range(100)]}))
    >>> t.X.shape, t.feature_names, t.roles
    ((100, 1), ['x'], {'id': 'identifier', 'x': 'measurement'})
    """
    pinned = dict(roles) if roles is not None else None
    if isinstance(source, (str, os.PathLike)):
        x, names, columns = _native._read_table_file(os.fspath(source), format, delimiter, pinned)
    elif hasattr(source, "columns") and hasattr(source, "dtypes"):
        if format is not None or delimiter is not None:
            raise ValueError("format and delimiter apply to files, not to a DataFrame")
        rows, names_in = _frame_rows(source)
        x, names, columns = _native._read_table_rows(rows, names_in, pinned)
    else:
        raise TypeError(f"read_table takes a path or a pandas DataFrame, not {type(source).__name__}")
    return Table(
        X=x,
        feature_names=list(names),
        roles={c: role for c, role, _ in columns},
        rules={c: rule for c, _, rule in columns},
    )


def _frame_rows(df: Any) -> tuple:
    """A DataFrame's rows as dicts of JSON-like values: missing values (NaN, NaT, None, pd.NA) as None, date-times
    as ISO 8601 strings, numpy scalars as Python numbers."""
    import pandas as pd

    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        raise ValueError("the DataFrame's column names are not unique")
    columns = []
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            values = [None if pd.isna(v) else v.isoformat() for v in s]
        elif pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
            values = [bool(v) for v in s.to_numpy()]
        elif pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
            values = [int(v) for v in s.to_numpy()]
        elif pd.api.types.is_float_dtype(s.dtype):
            values = [_float(v) for v in s.to_numpy(dtype=float, na_value=np.nan)]
        else:
            values = [_cell(v) for v in s]
        columns.append(values)
    rows = [dict(zip(names, r)) for r in zip(*columns)]
    return rows, names


def _float(v: float) -> Any:
    """NaN as missing; ±inf as the text a CSV file would hold, which a column of numbers reports as a bad cell."""
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(v)


def _cell(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return _float(v)
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (np.floating, decimal.Decimal)):
        return _float(float(v))
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)
