"""``Engine``: per-key record models over JSON-like records (dicts of numbers, strings, booleans, nested dicts)."""

from __future__ import annotations

import weakref
from typing import Any, Iterable, Mapping, Optional, Union

from . import _native
from ._columns import FrameScores, frame_columns, is_frame

Sensitivity = Union[str, float, None]


def _sensitivity(value: Sensitivity) -> dict[str, Any]:
    if value is None:
        return {}
    if value == "auto":
        return {"auto_sensitivity": True}
    return {"sensitivity": float(value)}


def _flush_quietly(native: Any) -> None:
    """A last flush from a finalizer, which cannot raise: what the store does not take stays unwritten."""
    try:
        native.flush()
    except Exception:  # noqa: BLE001 - a finalizer must not raise; the store said why when it went down
        pass


FIELD_ROLES = ("measurement", "category", "timestamp", "identifier", "text", "ignore")


class Engine:
    """One model per key: learns until ``min_training_records`` records are in (outcome ``status == "learning"``),
    then scores every record (``status == "scored"``) and retrains on new records, drift, staleness and sensitivity
    or role changes.

    Outcomes are dicts: ``{"status": "learning", "seen", "needed"}`` or ``{"status": "scored", "score",
    "threshold", "is_anomaly", "flagged_by": {"isolation_forest", "range_rule"}, "model_version"}`` (score: higher is
    more anomalous; ``is_anomaly`` when either detector flagged the record). Parameters left at ``None`` take the
    core's defaults; ``params`` shows the values in force. Safe to share between threads.

    Field roles (``FIELD_ROLES``): each field is a ``measurement``, ``category``, ``timestamp`` (its hour and weekday),
    ``identifier`` (kept in explanations, not scored), ``text`` (its length) or ``ignore``, inferred from the training
    records; ``field_roles={"id": "identifier"}`` pins them for every key, ``set_field_roles`` for one key, and
    ``model_info(key)["fields"]`` says which rule decided each.

    Bounds: ``max_history`` records per key, ``max_columns`` columns per model (the rarest fields beyond it are left
    out and counted), ``max_keys_in_memory`` keys (the least recently used idle ones are evicted; their history
    stays in the store, in memory without one).

    Persistence: ``store`` is a database URL, the store every service uses (``sqlite:///path/anomaly.db``, created
    when missing; ``postgres://user:password@host/db``; ``mysql://user:password@host/db`` for MySQL or MariaDB).
    Each key's history and every model version are kept there, and an engine started again on the same store
    restores a key (its current model and history) on its first use, scoring with the stored model. History appends
    are buffered and written every second, by ``flush()``, by ``close()`` (or leaving a ``with`` block) and when the
    engine is garbage-collected or the interpreter exits. A database that cannot be reached at start gives a
    ``RuntimeWarning`` and is connected when it answers; while it is down, keys already in memory keep scoring and
    learning (their history waits in the buffer), and calls that need the store, such as a key's first use, raise
    ``PersistenceError``. Without ``store``, everything stays in memory.
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
        field_roles: Optional[Mapping[str, str]] = None,
        max_columns: Optional[int] = None,
        max_keys_in_memory: Optional[int] = None,
        stale_growth: Optional[float] = None,
        range_tolerance: Optional[float] = None,
        range_rule: bool = True,
        store: Optional[str] = None,
    ) -> None:
        self._native = _native._Engine(
            min_training_records=min_training_records,
            max_history=max_history,
            retrain_every=retrain_every,
            n_estimators=n_estimators,
            drift=drift,
            seed=seed,
            field_roles=None if field_roles is None else dict(field_roles),
            max_columns=max_columns,
            max_keys_in_memory=max_keys_in_memory,
            stale_growth=stale_growth,
            range_tolerance=range_tolerance,
            range_rule=range_rule,
            store=store,
            **_sensitivity(sensitivity),
        )
        # Buffered history is written when the engine goes away or the interpreter exits, whichever comes first.
        self._finalizer = weakref.finalize(self, _flush_quietly, self._native)

    def flush(self) -> None:
        """Writes the history appends still buffered to the store (nothing without a store); raises
        ``PersistenceError`` while the store is down (what is buffered stays buffered)."""
        self._native.flush()

    def close(self) -> None:
        """Writes what is buffered, as ``flush``; the engine stays usable (it is released when garbage-collected)."""
        self._native.flush()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def observe(self, key: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Scores the record with the key's model (if any), learns it, and trains when due."""
        return self._native.observe(key, record)

    def observe_many(self, key: str, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``observe`` for each record in order, in one native call."""
        return self._native.observe_many(key, records)

    def observe_batch(self, key: str, records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """One batch as a service sees it: ``outcomes``, ``flagged`` indices, ``explanations`` by index, the batch
        against the key's baseline (``comparison``, ``comparison_summary``) and the ``model`` summary."""
        return self._native.observe_batch(key, records)

    def score(self, key: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Scores the record without learning it."""
        return self._native.score(key, record)

    def score_many(self, key: str, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``score`` for each record, in one native call that learns nothing and counts nothing: the records'
        vectors first, then the forest over all of them in blocks, several times faster per record than ``score``
        (the same outcomes, bit for bit). A record the engine refuses fails the call, naming its position; one
        that cannot be converted from Python fails it as ``observe_many`` does."""
        return self._native.score_many(key, records)

    def score_frame(self, key: str, frame: Any) -> FrameScores:
        """``score_many`` answered as arrays, ``FrameScores(scores, is_anomaly, threshold, model_version)``: the
        fast batch call. It learns nothing and counts nothing, builds no dict per outcome, and vectorises and scores
        the rows on the forest's threads. ``frame`` is

        * a pandas DataFrame, or a mapping of column name to 1-D array: the fastest, no Python object per value for
          numbers and Arrow-backed strings (pandas 3's default). A column's name is the field's dotted path
          (``customer.tier``, as ``pandas.json_normalize`` names it), and each row scores as the dict of its values
          does, bit for bit, with NaN, ``pd.NA`` and ``NaT`` as ``None`` (missing), date/times as their ISO strings
          (``Timestamp.isoformat()``, to the microsecond) and durations as seconds; a column holding dicts or lists
          is refused (flatten it first);
        * or records as dicts, as ``score_many`` takes them: a list or tuple is read natively into columns, any
          other iterable record by record as it yields.

        While the key is learning, scores are NaN and nothing is an anomaly; ``threshold`` and ``model_version`` are
        those of the key's model, ``None`` without one."""
        if is_frame(frame):
            names, arrays, rows = frame_columns(frame)
            return FrameScores(*self._native.score_columns(key, names, arrays, rows))
        return FrameScores(*self._native.score_dicts(key, frame))

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

    def set_field_roles(self, key: str, roles: Mapping[str, str]) -> None:
        """Pins the roles of a key's fields (``{"id": "identifier"}``; see ``FIELD_ROLES``) and retrains it if it has
        a model."""
        self._native.set_field_roles(key, dict(roles))

    def keys(self) -> list[str]:
        """Keys held in memory."""
        return self._native.keys()

    def totals(self) -> dict[str, int]:
        """``keys_in_memory``, ``restored``, ``evicted`` and ``trainings``."""
        return self._native.totals()

    def statistics(self, key: str) -> dict[str, Any]:
        """The key's baseline: statistics of its records neither detector flagged."""
        return self._native.statistics(key)

    def stats(self, key: str) -> dict[str, Any]:
        return self._native.stats(key)

    def model_info(self, key: str) -> Optional[dict[str, Any]]:
        return self._native.model_info(key)

    def history(self, key: str) -> list[Any]:
        return self._native.history(key)

    def clear(self, key: str) -> int:
        """Forgets the key's history and baseline; returns how many history records went. The model stays."""
        return self._native.clear(key)

    def model_snapshot(self, key: str) -> Optional[bytes]:
        """The key's current model as snapshot bytes (``RecordModel::from_snapshot_bytes`` reads them in Rust)."""
        return self._native.model_snapshot(key)

    @property
    def params(self) -> dict[str, Any]:
        return self._native.params
