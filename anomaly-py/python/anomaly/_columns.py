"""Records held as columns: a pandas DataFrame, or a mapping of column name to a 1-D array, as the typed numpy arrays
the native scorers read without a dict per record.

A column's name is the field's dotted path (``customer.tier``, as ``pandas.json_normalize`` names a nested field),
and row ``i`` reads as the record whose fields are the columns' values in row ``i``, so it scores as that dict does,
bit for bit:

* floats as numbers, NaN (and an infinity) as missing; integers as numbers; booleans as booleans;
* pandas' nullable integers and floats as numbers, ``pd.NA`` as missing;
* date/times (``datetime64``, with or without a time zone) as their epoch seconds (UTC), ``NaT`` as missing, which
  a timestamp field reads as the same moment as its ISO string; durations as seconds;
* anything else (strings, categoricals, objects) value by value as in a dict: ``None``, NaN, ``pd.NA`` and ``NaT``
  missing; ``str``, ``bool``, ``int``, ``float`` values; a dict, list or tuple refused (flatten it first).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import numpy as np

_INT64_MAX = np.iinfo(np.int64).max


class FrameScores(NamedTuple):
    """What ``Engine.score_frame`` returns: one score and verdict per row, and the model that gave them."""

    score: np.ndarray
    """Scores in (0, 1], higher is more anomalous (NaN while the key is learning)."""
    is_anomaly: np.ndarray
    """Whether a detector flagged the row (the forest or the range rule)."""
    threshold: Optional[float]
    """The threshold the scores were compared with (``None`` while the key is learning)."""
    model_version: Optional[int]
    """The version of the model that scored the rows (``None`` while the key is learning)."""


def is_frame(records: Any) -> bool:
    """Whether ``records`` holds columns (a DataFrame or a mapping of columns) rather than records."""
    return isinstance(records, Mapping) or (hasattr(records, "columns") and hasattr(records, "dtypes"))


def frame_columns(frame: Any) -> tuple[list[str], list[Any], int]:
    """``(names, arrays, rows)`` of a DataFrame or a mapping of name to 1-D array-like: each column a numpy array
    (float64, int64, bool or objects), or Arrow-backed strings as ``(offsets, bytes, nulls)`` arrays, read by the
    native side without a Python string per value."""
    if isinstance(frame, Mapping):
        items = [(str(name), values) for name, values in frame.items()]
    else:
        items = [(str(name), frame[name]) for name in frame.columns]
        if frame.columns.has_duplicates:
            raise ValueError(f"column names must be unique, got duplicates in {list(map(str, frame.columns))}")
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"column names must be unique once read as strings, got {names}")
    arrays = [_array(name, values) for name, values in items]
    lengths = [len(a[2]) if isinstance(a, tuple) else len(a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError(f"columns of different lengths: {dict(zip(names, lengths))}")
    rows = lengths[0] if lengths else (len(frame) if not isinstance(frame, Mapping) else 0)
    return names, arrays, rows


def _array(name: str, values: Any) -> Any:
    dtype = getattr(values, "dtype", None)
    if dtype is None or not hasattr(values, "to_numpy"):
        values = np.asarray(values)
        if values.ndim != 1:
            raise ValueError(f"column `{name}`: expected one dimension, got {values.ndim}")
        dtype = values.dtype
    kind = getattr(dtype, "kind", "O")
    if isinstance(dtype, np.dtype):
        a = values.to_numpy() if hasattr(values, "to_numpy") else values
        if kind == "b":
            return np.ascontiguousarray(a, dtype=np.bool_)
        if kind == "i" or (kind == "u" and (a.size == 0 or a.max() <= _INT64_MAX)):
            return np.ascontiguousarray(a, dtype=np.int64)
        if kind in "uf":
            return np.ascontiguousarray(a, dtype=np.float64)
        if kind == "M":
            return _seconds(a.astype("datetime64[ns]"))
        if kind == "m":
            return _seconds(a.astype("timedelta64[ns]"))
        if kind == "O":
            return np.ascontiguousarray(_missing_as_none(a), dtype=object)
        return np.ascontiguousarray(a.astype(object), dtype=object)
    # pandas extension dtypes: nullable numbers, time-zone-aware date/times, strings, categoricals.
    text = _arrow_text(values)
    if text is not None:
        return text
    if kind in "iuf":
        return np.ascontiguousarray(values.to_numpy(dtype=np.float64, na_value=np.nan))
    if kind == "M":
        utc = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return _seconds(utc.to_numpy(dtype="datetime64[ns]"))
    return np.ascontiguousarray(values.to_numpy(dtype=object, na_value=None), dtype=object)


def _arrow_text(values: Any) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A column of Arrow-backed strings (pandas' ``str`` dtype with pyarrow, ``string[pyarrow]``, ``ArrowDtype``
    strings) as ``(offsets, bytes, nulls)``: int64 offsets, one more than the rows, into the UTF-8 bytes, without a
    copy of the bytes. ``None`` for anything else."""
    to_arrow = getattr(getattr(values, "array", None), "__arrow_array__", None)
    if to_arrow is None:
        return None
    try:
        import pyarrow as pa
    except ImportError:
        return None
    data = to_arrow()
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks() if data.num_chunks != 1 else data.chunk(0)
    if not (pa.types.is_string(data.type) or pa.types.is_large_string(data.type) or pa.types.is_string_view(data.type)):
        return None
    if not pa.types.is_large_string(data.type):
        data = data.cast(pa.large_string())
    _, offsets, chars = data.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64)[data.offset : data.offset + len(data) + 1]
    chars = np.frombuffer(chars, dtype=np.uint8) if chars is not None else np.zeros(0, dtype=np.uint8)
    nulls = np.ascontiguousarray(data.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
    return np.ascontiguousarray(offsets), chars, nulls


def _seconds(a: np.ndarray) -> np.ndarray:
    """Nanosecond date/times or durations as float seconds, NaT as NaN."""
    out = a.view(np.int64) / 1e9
    out[np.isnat(a)] = np.nan
    return np.ascontiguousarray(out, dtype=np.float64)


def _missing_as_none(a: np.ndarray) -> np.ndarray:
    """An object array with pandas' missing markers (``pd.NA``, ``NaT``) as ``None``; NaN and ``None`` stay."""
    try:
        import pandas as pd
    except ImportError:
        return a
    mask = pd.isna(a)
    if not mask.any():
        return a
    a = a.copy()
    a[mask] = None
    return a
