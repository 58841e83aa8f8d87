"""Anomaly detection on a Rust core.

* ``IsolationForest``: scikit-learn's estimator (same parameters, methods, attributes and signs), plus ``explain``.
* ``MovingAverage``, ``Ema``, ``StreamingIsolationForest``: streaming detectors (``update``, ``score_many``).
* ``Engine``: per-key record models over dicts, with explanations in field names.

Models pickle through the core's versioned snapshot, so a model pickled here loads in Rust and back.
"""

from . import exceptions
from ._engine import FIELD_ROLES, Engine
from ._forest import IsolationForest
from ._native import Attribution, Detection, Explanation, __version__
from ._stream import Ema, MovingAverage, StreamingIsolationForest, StreamScores, Verdict
from .exceptions import (
    AnomalyError,
    CorruptModelError,
    DimensionMismatchError,
    EmptyInputError,
    InvalidInputError,
    InvalidParameterError,
    NonFiniteError,
    NotFittedError,
)

__all__ = [
    "IsolationForest",
    "MovingAverage",
    "Ema",
    "StreamingIsolationForest",
    "Engine",
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
    "__version__",
]
