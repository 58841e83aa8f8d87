"""``RecordModel``: the record engine's model for one set of dicts, fitted once, scored in batches, carried as bytes."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Union

import numpy as np

from . import _native
from ._columns import frame_columns, is_frame


class RecordModel:
    """The engine's per-key model on its own: a schema learnt from dicts (field roles, categories, dates, blanks)
    and an isolation forest over their vectors. ``fit`` learns it, ``score`` gives scores (in (0, 1], higher is more
    anomalous) and verdicts for a batch without learning from it, ``explain`` explains one record in field names,
    and ``to_snapshot_bytes`` / ``from_snapshot_bytes`` carry it between processes (Rust reads the same bytes with
    ``RecordModel::from_snapshot_bytes``).
    """

    def __init__(self, native: Any) -> None:
        self._native = native

    @classmethod
    def fit(
        cls,
        records: Iterable[Mapping[str, Any]],
        *,
        roles: Optional[Mapping[str, str]] = None,
        n_estimators: int = 100,
        max_samples: Union[str, int, float] = "auto",
        contamination: Union[str, float] = "auto",
        random_state: int = 0,
    ) -> RecordModel:
        """Learns the schema of ``records`` (``roles`` pins a field's role by dotted path) and fits the forest."""
        native = _native._RecordModel.fit(
            list(records),
            dict(roles) if roles is not None else None,
            n_estimators,
            max_samples,
            contamination,
            random_state,
        )
        return cls(native)

    def score(self, records: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, is_anomaly)`` of ``records``, in order: an iterable of dicts, or the records held as columns
        (a pandas DataFrame or a mapping of column name to 1-D array, read as ``Engine.score_frame`` reads them,
        the faster path)."""
        if is_frame(records):
            return self._native.score_columns(*frame_columns(records))
        return self._native.score(list(records))

    def explain(self, record: Mapping[str, Any]) -> dict:
        """The verdict on one record with each field's share and a rationale."""
        return self._native.explain(record)

    @property
    def threshold(self) -> float:
        """The score above which a record is an anomaly."""
        return self._native.threshold

    @property
    def feature_names(self) -> list:
        """The schema's columns."""
        return self._native.feature_names

    @property
    def roles(self) -> dict:
        """Each field's role, by dotted path."""
        return self._native.roles

    @property
    def trained_on(self) -> int:
        """Records the model was fitted on."""
        return self._native.trained_on

    def to_snapshot_bytes(self) -> bytes:
        """The model as the core's versioned snapshot."""
        return self._native.to_snapshot_bytes()

    @classmethod
    def from_snapshot_bytes(cls, data: bytes) -> RecordModel:
        """A model from snapshot bytes; ``CorruptModelError`` for bytes it cannot read."""
        return cls(_native._RecordModel.from_snapshot_bytes(bytes(data)))
