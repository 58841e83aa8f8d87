"""Streaming detectors: ``MovingAverage``, ``Ema`` and ``StreamingIsolationForest``.

Each class forwards to one native detector. Scores follow the core's convention (higher is more anomalous); during
warm-up a detector has no verdict, and ``update`` returns ``None`` (``score_many`` marks those rows ``ready=False``).
A parameter left at ``None`` takes the core's default; ``params`` shows the values in force.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _native

Observation = Union[float, Sequence[float], np.ndarray]


class Verdict(NamedTuple):
    """A verdict without its explanation."""

    score: float
    threshold: float
    is_anomaly: bool


class StreamScores(NamedTuple):
    """``score_many``'s result, one entry per observation.

    ``ready`` is False during warm-up, where ``scores`` and ``thresholds`` hold NaN and ``is_anomaly`` False.
    """

    scores: np.ndarray
    thresholds: np.ndarray
    is_anomaly: np.ndarray
    ready: np.ndarray


def _observation(x: Observation) -> list[float]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim > 1:
        from .exceptions import InvalidInputError

        raise InvalidInputError(f"an observation is a number or a 1-D vector, got shape {arr.shape}")
    return arr.reshape(-1).tolist()


class _StreamingDetector:
    _kind = ""

    def __init__(self, **params: Any) -> None:
        self._params = params
        self._native = getattr(_native._Stream, self._kind)(**params)

    def update(self, x: Observation) -> Optional[_native.Detection]:
        """Scores ``x`` against what was learnt so far, then learns it. ``None`` during warm-up; otherwise a
        ``Detection`` (score, threshold, is_anomaly, attributions, details, rationale)."""
        return self._native.update(_observation(x))

    def score(self, x: Observation) -> Optional[Verdict]:
        """Judges ``x`` without learning it; ``None`` during warm-up."""
        v = self._native.score(_observation(x))
        return None if v is None else Verdict(*v)

    def explain(self, x: Observation) -> Optional[_native.Explanation]:
        """Explains the verdict ``score`` would give, without learning ``x``; ``None`` during warm-up."""
        return self._native.explain(_observation(x))

    def score_many(self, series: Any) -> StreamScores:
        """Scores then learns every observation of ``series`` in order, in one native loop.

        ``series`` is 1-D (a univariate stream) or 2-D (rows are observations). The whole series is checked first:
        on error nothing has been learnt.
        """
        arr = np.asarray(series, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        out = self._native.score_many(arr)
        return StreamScores(out["scores"], out["thresholds"], out["is_anomaly"], out["ready"])

    @property
    def params(self) -> dict[str, Any]:
        """The core's parameters in force (defaults filled in)."""
        return self._native.params

    @property
    def dims(self) -> Optional[int]:
        """The observation width, once the first observation fixed it."""
        return self._native.dims

    def to_snapshot_bytes(self) -> bytes:
        """The detector and its state as the core's versioned snapshot."""
        return self._native.to_snapshot_bytes()

    @classmethod
    def from_snapshot_bytes(cls, data: bytes) -> _StreamingDetector:
        """A detector restored from snapshot bytes written here or by Rust (the kind must match the class)."""
        native = _native._Stream.from_snapshot_bytes(data)
        if native.kind != cls._kind:
            from .exceptions import CorruptModelError

            raise CorruptModelError(f"snapshot holds a {native.kind} detector, not a {cls._kind} one")
        obj = cls.__new__(cls)
        obj._params = {}
        obj._native = native
        return obj

    def __getstate__(self) -> dict[str, Any]:
        return {"params": self._params, "snapshot": self._native.to_snapshot_bytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._params = state["params"]
        self._native = _native._Stream.from_snapshot_bytes(state["snapshot"])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items() if v is not None)
        return f"{type(self).__name__}({args})"


class MovingAverage(_StreamingDetector):
    """Deviation from the mean of the last ``window`` observations (absolute, or in window standard deviations
    with ``sigma``). Warm-up: until the window is full."""

    _kind = "moving_average"

    def __init__(
        self, window: Optional[int] = None, threshold: Optional[float] = None, sigma: Optional[float] = None
    ) -> None:
        super().__init__(window=window, threshold=threshold, sigma=sigma)


class Ema(_StreamingDetector):
    """Exponentially weighted mean and variance with a k-sigma threshold. Warm-up: ``warmup`` observations."""

    _kind = "ema"

    def __init__(
        self, alpha: Optional[float] = None, sigma: Optional[float] = None, warmup: Optional[int] = None
    ) -> None:
        super().__init__(alpha=alpha, sigma=sigma, warmup=warmup)


class StreamingIsolationForest(_StreamingDetector):
    """An isolation forest over a rolling window, with EMA-smoothed scores, an adaptive threshold and a minimum
    streak (``min_consecutive``) before an anomaly is reported."""

    _kind = "streaming_isolation_forest"

    def __init__(
        self,
        batch_size: Optional[int] = None,
        window_size: Optional[int] = None,
        warmup: Optional[int] = None,
        n_estimators: Optional[int] = None,
        smoothing_alpha: Optional[float] = None,
        threshold_sigma: Optional[float] = None,
        threshold_window: Optional[int] = None,
        min_consecutive: Optional[int] = None,
        contamination: Optional[float] = None,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            window_size=window_size,
            warmup=warmup,
            n_estimators=n_estimators,
            smoothing_alpha=smoothing_alpha,
            threshold_sigma=threshold_sigma,
            threshold_window=threshold_window,
            min_consecutive=min_consecutive,
            contamination=contamination,
            seed=seed,
        )
