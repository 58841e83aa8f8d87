"""``Engine``: per-key record models over JSON-like records (dicts of numbers, strings, booleans, nested dicts)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Union

from . import _native

Sensitivity = Union[str, float, None]


def _sensitivity(value: Sensitivity) -> dict[str, Any]:
    if value is None:
        return {}
    if value == "auto":
        return {"auto_sensitivity": True}
    return {"sensitivity": float(value)}


class Engine:
    """One model per key: learns until ``min_training_records`` records are in (outcome ``status == "learning"``),
    then scores every record (``status == "scored"``) and retrains on new records, drift and sensitivity changes.

    Outcomes are dicts: ``{"status": "learning", "seen", "needed"}`` or ``{"status": "scored", "score",
    "threshold", "is_anomaly", "model_version"}`` (score: higher is more anomalous). Parameters left at ``None`` take
    the core's defaults; ``params`` shows the values in force. Safe to share between threads.
    """

    def __init__(
        self,
        *,
        min_training_records: Optional[int] = None,
        max_history: Optional[int] = None,
        retrain_every: Optional[int] = None,
        sensitivity: Sensitivity = None,
        n_estimators: Optional[int] = None,
        drift: Optional[bool] = None,
        seed: Optional[int] = None,
    ) -> None:
        self._native = _native._Engine(
            min_training_records=min_training_records,
            max_history=max_history,
            retrain_every=retrain_every,
            n_estimators=n_estimators,
            drift=drift,
            seed=seed,
            **_sensitivity(sensitivity),
        )

    def observe(self, key: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Scores the record with the key's model (if any), learns it, and trains when due."""
        return self._native.observe(key, record)

    def observe_many(self, key: str, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``observe`` for each record in order, in one native call."""
        return self._native.observe_many(key, records)

    def score(self, key: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Scores the record without learning it."""
        return self._native.score(key, record)

    def explain(self, key: str, record: Mapping[str, Any]) -> Optional[dict[str, Any]]:
        """The verdict explained in field names (``verdict``, ``fields``, ``notes``, ``rationale``); ``None`` while
        the key is learning."""
        return self._native.explain(key, record)

    def train(self, key: str) -> int:
        """Trains the key now; returns the new model version."""
        return self._native.train(key)

    def set_sensitivity(self, key: str, contamination: Union[str, float]) -> None:
        """Sets the share of anomalies to expect for a key (``"auto"`` or a float in (0, 0.5]) and retrains it."""
        self._native.set_sensitivity(key, None if contamination == "auto" else float(contamination))

    def keys(self) -> list[str]:
        return self._native.keys()

    def stats(self, key: str) -> dict[str, Any]:
        return self._native.stats(key)

    def model_info(self, key: str) -> Optional[dict[str, Any]]:
        return self._native.model_info(key)

    def history(self, key: str) -> list[Any]:
        return self._native.history(key)

    def clear(self, key: str) -> int:
        return self._native.clear(key)

    def model_snapshot(self, key: str) -> Optional[bytes]:
        """The key's current model as snapshot bytes (``RecordModel::from_snapshot_bytes`` reads them in Rust)."""
        return self._native.model_snapshot(key)

    @property
    def params(self) -> dict[str, Any]:
        return self._native.params
