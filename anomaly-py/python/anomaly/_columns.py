"""Records held as columns: a pandas DataFrame, or a mapping of column name to a 1-D array, as the typed numpy arrays
the native scorers read without a dict per record.

A column's name is the field's dotted path (``customer.tier``, as ``pandas.json_normalize`` names a nested field),
and row ``i`` reads as the record whose fields are the columns' values in row ``i``: it scores as that dict does,
bit for bit, once the values pandas has and a dict record does not take are given their plain meaning:

* floats as numbers, NaN (and an infinity) as missing; integers as numbers; booleans as booleans;
* pandas' nullable integers, floats and booleans as numbers and booleans, ``pd.NA`` as missing;
* date/times (``datetime64``, with or without a time zone, and Arrow timestamps and dates) as their ISO strings
  (as ``Timestamp.isoformat()`` gives them, to the microsecond: local time and offset for a time zone), ``NaT`` as
  missing;
* durations (``timedelta64``) as their seconds;
* anything else (strings, categoricals, objects) value by value as in a dict: ``None``, NaN, ``pd.NA`` and ``NaT``
  missing; ``str``, ``bool``, ``int``, ``float`` and numpy scalars as values; a dict, list or tuple refused (flatten
  it first), as is any other type.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import numpy as np

_INT64_MAX = np.iinfo(np.int64).max


class FrameScores(NamedTuple):
    """What ``Engine.score_frame`` returns: one score and verdict per row, and the model that gave them."""

    scores: np.ndarray
    """Scores in (0, 1], higher is more anomalous (NaN while the key is learning)."""
    is_anomaly: np.ndarray
    """Whether a detector flagged the row (the forest or the range rule)."""
    threshold: Optional[float]
    """The threshold the scores are compared with (``None`` while the key has no model)."""
    model_version: Optional[int]
    """The version of the key's model (``None`` while the key has no model)."""


def is_frame(records: Any) -> bool:
    """Whether ``records`` holds columns (a pandas DataFrame or a mapping of columns) rather than records."""
    if isinstance(records, Mapping):
        return True
    pd = _pandas()
    return pd is not None and isinstance(records, pd.DataFrame)


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        return None
    return pd


def frame_columns(frame: Any) -> tuple[list[str], list[Any], int]:
    """``(names, arrays, rows)`` of a pandas DataFrame or a mapping of name to 1-D array-like: each column a numpy
    array (float64, int64, bool or objects), or Arrow-backed strings as ``(offsets, bytes, nulls)`` arrays, read by
    the native side without a Python string per value."""
    if isinstance(frame, Mapping):
        items = [(str(name), values) for name, values in frame.items()]
        rows = None
    else:
        if frame.columns.has_duplicates:
            raise ValueError(f"column names must be unique, got duplicates in {list(map(str, frame.columns))}")
        items = [(str(name), frame[name]) for name in frame.columns]
        rows = len(frame)
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"column names must be unique once read as strings, got {names}")
    arrays = [_array(name, values) for name, values in items]
    lengths = [len(a[2]) if isinstance(a, tuple) else len(a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError(f"columns of different lengths: {dict(zip(names, lengths))}")
    if rows is None:
        rows = lengths[0] if lengths else 0
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
            return _iso(values)
        if kind == "m":
            return _seconds(a)
        if kind == "O":
            # None, NaN, pd.NA and NaT are read as missing natively.
            return np.ascontiguousarray(a, dtype=object)
        return np.ascontiguousarray(a.astype(object), dtype=object)
    # pandas extension dtypes: nullable numbers, date/times with a time zone or in Arrow, strings, categoricals.
    if kind in "iuf":
        return np.ascontiguousarray(values.to_numpy(dtype=np.float64, na_value=np.nan))
    if kind == "M":
        return _iso(values)
    if kind == "m":
        return _seconds(values.to_numpy(dtype="timedelta64[ns]", na_value=np.timedelta64("NaT")))
    text = _arrow_text(values)
    if text is not None:
        return text
    return np.ascontiguousarray(values.to_numpy(dtype=object, na_value=None), dtype=object)


def _arrow_text(values: Any) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A column of Arrow-backed strings (pandas' ``str`` dtype with pyarrow, ``string[pyarrow]``, ``ArrowDtype``
    strings) as ``(offsets, bytes, nulls)``: int64 offsets, one more than the rows, into the UTF-8 bytes, without a
    copy of the bytes of a single chunk. ``None`` for anything else."""
    pd = _pandas()
    if pd is None or not pd.api.types.is_string_dtype(values.dtype):
        return None
    to_arrow = getattr(getattr(values, "array", None), "__arrow_array__", None)
    if to_arrow is None:
        return None
    try:
        import pyarrow as pa
    except ImportError:
        return None
    textual = (pa.types.is_string, pa.types.is_large_string, getattr(pa.types, "is_string_view", lambda _: False))
    data = to_arrow()
    chunks = data.chunks if isinstance(data, pa.ChunkedArray) else [data]
    if not chunks or not all(any(test(c.type) for test in textual) for c in chunks):
        return None
    # Large strings (64-bit offsets) before combining, so that chunks of more than 2 GiB in all combine.
    chunks = [c if pa.types.is_large_string(c.type) else c.cast(pa.large_string()) for c in chunks]
    data = chunks[0] if len(chunks) == 1 else pa.chunked_array(chunks, type=pa.large_string()).combine_chunks()
    _, offsets, chars = data.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64)[data.offset : data.offset + len(data) + 1]
    chars = np.frombuffer(chars, dtype=np.uint8) if chars is not None else np.zeros(0, dtype=np.uint8)
    nulls = np.ascontiguousarray(data.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
    return np.ascontiguousarray(offsets), chars, nulls


def _iso(values: Any) -> np.ndarray:
    """Date/times as the ISO strings ``Timestamp.isoformat()`` gives (to the microsecond: digits past the sixth are
    dropped, as the engine drops them), ``None`` for ``NaT``: the strings a dict record would hold. A time zone
    gives local time and its offset; a date (Arrow ``date32``/``date64``) gives the date alone."""
    pd = _pandas()
    if pd is None or not hasattr(values, "dt"):
        if pd is not None and not isinstance(values, np.ndarray):
            values = pd.Series(values, copy=False)
        else:
            a = np.asarray(values)
            return _iso_text(_micros_of(a), np.isnat(a), None)
    s = values
    missing = np.asarray(s.isna(), dtype=bool)
    arrow = getattr(s.dtype, "pyarrow_dtype", None)
    if arrow is not None:
        import pyarrow as pa

        if pa.types.is_date(arrow):
            days = _micros(s) if len(s) else np.zeros(0, dtype="datetime64[us]")
            out = np.datetime_as_string(days.astype("datetime64[D]"), unit="D").astype(object)
            out[missing] = None
            return np.ascontiguousarray(out, dtype=object)
    tz = getattr(s.dtype, "tz", None) or getattr(arrow, "tz", None)
    wall = _micros(s.dt.tz_localize(None) if tz is not None else s)
    offsets = None
    if tz is not None:
        utc = _micros(s.dt.tz_convert("UTC").dt.tz_localize(None))
        offsets = (wall.view(np.int64) - utc.view(np.int64)) // 1_000_000
    return _iso_text(wall, missing, offsets)


def _iso_text(wall: np.ndarray, missing: np.ndarray, offsets: Optional[np.ndarray]) -> np.ndarray:
    """ISO strings of wall-clock ``datetime64[us]`` values, whole seconds without a fraction, with
    ``±HH:MM[:SS]`` offsets (seconds east of UTC) when given, as Python's ``isoformat`` writes them."""
    fraction = wall.view(np.int64) % 1_000_000 != 0
    text = np.where(
        fraction, np.datetime_as_string(wall, unit="us"), np.datetime_as_string(wall.astype("datetime64[s]"), unit="s")
    )
    if offsets is not None:
        offsets = np.where(missing, 0, offsets)
        suffixes = {int(o): _offset(int(o)) for o in np.unique(offsets)}
        text = np.char.add(text, np.array([suffixes[o] for o in offsets.tolist()], dtype=str))
    out = text.astype(object)
    out[missing] = None
    return np.ascontiguousarray(out, dtype=object)


def _offset(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


def _micros(s: Any) -> np.ndarray:
    """A naive date/time Series as ``datetime64[us]`` (see ``_micros_of``)."""
    a = np.asarray(s.to_numpy())
    if a.dtype.kind != "M":
        a = np.asarray(s.astype("datetime64[us]").to_numpy())
    return _micros_of(a)


def _micros_of(a: np.ndarray) -> np.ndarray:
    """``datetime64`` values as ``datetime64[us]``, finer units floored (as an ISO string's digits past the sixth
    are dropped), without passing through nanoseconds (whose range ends in 2262)."""
    unit, count = np.datetime_data(a.dtype)
    per_micro = {"ns": 1_000, "ps": 1_000_000, "fs": 1_000_000_000}.get(unit)
    if per_micro is None:
        return a.astype("datetime64[us]")
    nat = np.isnat(a)
    micros = a.view(np.int64) * count // per_micro
    micros[nat] = np.iinfo(np.int64).min
    return micros.view("datetime64[us]")


def _seconds(a: Any) -> np.ndarray:
    """Durations as float seconds, NaT as NaN."""
    a = np.asarray(a)
    unit, count = np.datetime_data(a.dtype)
    per_second = {"D": 1 / 86_400, "h": 1 / 3600, "m": 1 / 60, "s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}.get(unit)
    if per_second is None:
        a, count, per_second = a.astype("timedelta64[ns]"), 1, 1e9
    out = a.view(np.int64) * count / per_second
    out[np.isnat(a)] = np.nan
    return np.ascontiguousarray(out, dtype=np.float64)
