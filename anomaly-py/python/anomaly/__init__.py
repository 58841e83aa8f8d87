"""Anomaly detection on a Rust core.

* ``IsolationForest``: scikit-learn's estimator (same parameters, methods, attributes and signs), plus ``explain``.
* ``MovingAverage``, ``Ema``, ``StreamingIsolationForest``: streaming detectors (``update``, ``score_many``).
* ``Engine``: per-key record models over dicts, with explanations in field names (``score_frame`` scores a
  DataFrame's rows without a dict per row); ``RecordModel``: one such model on its own, carried as snapshot bytes.
* ``anomaly.spark``, ``anomaly.dask``: one model per group inside Spark or Dask (imported on demand).
* ``read_table``: a CSV, JSON lines or Parquet file, or a DataFrame, as a numeric matrix with feature names and
  column roles (dates, categories, identifiers and blanks encoded as ``detect`` encodes them).

Models pickle through the core's versioned snapshot, so a model pickled here loads in Rust and back.
"""

from . import exceptions
from ._columns import FrameScores
from ._engine import FIELD_ROLES, Engine
from ._forest import IsolationForest
from ._record_model import RecordModel
from ._native import Attribution, Detection, Explanation, __version__
from ._stream import Ema, MovingAverage, StreamingIsolationForest, StreamScores, Verdict
from ._table import Table, read_table
from .exceptions import (
    AnomalyError,
    CorruptModelError,
    DimensionMismatchError,
    EmptyInputError,
    InvalidInputError,
    InvalidParameterError,
    NonFiniteError,
    NotFittedError,
    TableError,
)

__all__ = [
    "IsolationForest",
    "MovingAverage",
    "Ema",
    "StreamingIsolationForest",
    "Engine",
    "RecordModel",
    "FrameScores",
    "read_table",
    "Table",
    "FIELD_ROLES",
    "Explanation",
    "Detection",
    "Attribution",
    "Verdict",
    "StreamScores",
    "exceptions",
    "AnomalyError",
    "InvalidParameterError",
    "InvalidInputError",
    "DimensionMismatchError",
    "NonFiniteError",
    "EmptyInputError",
    "NotFittedError",
    "CorruptModelError",
    "TableError",
    "__version__",
]
