"""``IsolationForest``: scikit-learn's estimator API over the native forest.

This module only adapts: it reads X as scikit-learn does (dtype, feature names), turns ``random_state`` into a seed
and forwards to ``anomaly._native._IsolationForest``, which converts the parameters to the core's and fits, scores
and explains there with the GIL released. The defaults in the signature are the core's, read from the native module.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from typing import Any

import numpy as np

from . import _native
from ._threads import effective_n_jobs
from .exceptions import (
    DimensionMismatchError,
    EmptyInputError,
    InvalidInputError,
    InvalidParameterError,
    NotFittedError,
)

try:
    from sklearn.base import BaseEstimator, OutlierMixin
    from sklearn.utils.validation import _check_feature_names, check_array

    HAVE_SKLEARN = True
except ImportError:  # scikit-learn is optional: the estimator then carries a minimal get/set_params of its own.
    HAVE_SKLEARN = False

    class BaseEstimator:  # type: ignore[no-redef]
        """The parts of scikit-learn's BaseEstimator the estimator relies on."""

        @classmethod
        def _get_param_names(cls) -> list[str]:
            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values() if p.name != "self")

        def get_params(self, deep: bool = True) -> dict[str, Any]:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params: Any) -> BaseEstimator:
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"Invalid parameter {key!r} for estimator {self!r}. Valid parameters are: {valid!r}.")
                setattr(self, key, value)
            return self

        def __repr__(self) -> str:
            sig = inspect.signature(type(self).__init__)
            changed = [
                f"{name}={getattr(self, name)!r}"
                for name, p in sig.parameters.items()
                if name != "self" and getattr(self, name) is not p.default
            ]
            return f"{type(self).__name__}({', '.join(changed)})"

    class OutlierMixin:  # type: ignore[no-redef]
        """scikit-learn's OutlierMixin: fit_predict."""

        def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> np.ndarray:
            return self.fit(X, **kwargs).predict(X)


def _from_core(value: Any) -> Any:
    """A core setting (``"auto"``, ``"all"``, ``{"count": n}``, ``{"fraction": f}``) in scikit-learn's spelling."""
    if value == "all":
        return 1.0
    if isinstance(value, dict):
        ((_, v),) = value.items()
        return v
    return value


_CORE = _native.isolation_forest_defaults()
_MAX_INT = np.iinfo(np.int32).max


def _seed(random_state: Any) -> int:
    """The core seed: an int is used as is (``random_state=0`` is the core's seed 0), None draws from numpy's global
    generator and a ``RandomState`` / ``Generator`` draws from itself, as scikit-learn derives its trees' seeds."""
    if random_state is None:
        return int(np.random.mtrand._rand.randint(_MAX_INT))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise InvalidParameterError(f"random_state must be a non-negative int, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(_MAX_INT))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(_MAX_INT))
    raise InvalidParameterError(
        f"random_state must be None, an int, a numpy RandomState or Generator, got {type(random_state).__name__}"
    )


def _sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray:
    """The weights as a fresh float64 array of one weight per row, with scikit-learn's ``_check_sample_weight``
    rules and messages: a scalar is every row's weight; a list, tuple, pandas Series or array of numbers is taken;
    two dimensions, a wrong length, NaN, infinity or all zeros raise ``ValueError`` (``InvalidParameterError``).
    Negative weights are refused by the core. The caller's array is never written to."""
    if isinstance(sample_weight, numbers.Number):
        weights = np.full(n_samples, sample_weight, dtype=np.float64)
    else:
        try:
            weights = np.array(sample_weight, dtype=np.float64, copy=True)
        except (TypeError, ValueError) as e:
            raise InvalidParameterError(f"sample_weight cannot be read as numbers: {e}") from e
        if weights.ndim != 1:
            raise InvalidParameterError(
                f"Sample weights must be 1D array or scalar, got {weights.ndim}D array. Expected either a scalar or "
                f"a 1D array of shape ({n_samples},)"
            )
        if weights.shape != (n_samples,):
            raise InvalidParameterError(f"sample_weight.shape == {weights.shape}, expected {(n_samples,)}!")
    if np.isnan(weights).any():
        raise InvalidParameterError("Input sample_weight contains NaN.")
    if not np.isfinite(weights).all():
        raise InvalidParameterError("Input sample_weight contains infinity or a value too large for dtype('float64').")
    if not weights.any():
        raise InvalidParameterError("Sample weights must contain at least one non-zero number.")
    return weights


def _feature_names(X: Any) -> np.ndarray | None:
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = np.asarray(columns, dtype=object)
    if len(names) and all(isinstance(n, str) for n in names):
        return names
    return None


def _is_sparse(X: Any) -> bool:
    """Whether X is a scipy sparse matrix or array (scipy is only imported when X could be one)."""
    if not hasattr(X, "tocsr"):
        return False
    try:
        import scipy.sparse
    except ImportError:
        return False
    return scipy.sparse.issparse(X)


def _as_csr(X: Any) -> Any:
    """Sparse X as a canonical float64 CSR matrix (sorted indices, no duplicates), never dense; the caller's
    matrix is not modified (a copy is made when it needs converting)."""
    if X.dtype.kind == "c":
        raise InvalidInputError("Complex data not supported")
    try:
        csr = X.tocsr()
        if csr.dtype != np.float64:
            csr = csr.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"cannot read the sparse matrix as float64: {e}") from e
    if not csr.has_canonical_format or not csr.data.flags.c_contiguous:
        csr = csr.copy() if csr is X else csr
        csr.data = np.ascontiguousarray(csr.data)
        csr.sum_duplicates()
    if csr.indices.dtype not in (np.int32, np.int64) or csr.indptr.dtype not in (np.int32, np.int64):
        csr = csr.copy() if csr is X else csr
        csr.indices, csr.indptr = csr.indices.astype(np.int64), csr.indptr.astype(np.int64)
    return csr


def _as_matrix(X: Any) -> np.ndarray:
    """X as a C-contiguous float64 matrix, without scikit-learn (no copy when it already is one)."""
    try:
        arr = np.asarray(X)
        if arr.dtype.kind == "c":
            raise InvalidInputError("Complex data not supported")
        arr = np.ascontiguousarray(arr, dtype=np.float64)
    except ValueError as e:
        if isinstance(e, InvalidInputError):
            raise
        raise InvalidInputError(str(e)) from e
    if arr.ndim != 2:
        raise InvalidInputError(f"Expected a 2-D array (rows x features), got {arr.ndim} dimension(s)")
    return arr


class IsolationForest(OutlierMixin, BaseEstimator):
    """Isolation forest with scikit-learn's API and sign conventions, fitted and scored by the Rust core.

    Parameters, methods and attributes are scikit-learn's ``sklearn.ensemble.IsolationForest``'s:
    ``score_samples`` is the opposite of the anomaly score (lower is more anomalous), ``decision_function`` is
    ``score_samples - offset_`` (negative for anomalies) and ``predict`` gives -1 for anomalies, +1 for inliers.
    The trees stay native, so there is no ``estimators_`` list. Differences:

    * ``random_state``: an int is the core's seed directly; results are reproducible for an int and independent of
      ``n_jobs``, but not equal to scikit-learn's trees (the core has its own random generator).
    * ``n_jobs``: read at every call, as scikit-learn does: k uses k threads, -1 every core, -k all but k - 1;
      ``None`` (the default) takes an active ``joblib.parallel_backend`` / ``parallel_config`` setting, and
      otherwise the core's pool of one thread per core, shared by all callers (scikit-learn would use one thread).
      ``threadpoolctl.threadpool_limits`` caps it. Scores are the same bits for any thread count.
    * ``fit(sample_weight=...)`` draws each tree's rows with probabilities proportional to the weights, as
      scikit-learn 1.9 does (a row of weight 0 is never drawn; without ``bootstrap``, at least ``max_samples_`` rows
      need a positive weight); the rows follow scikit-learn's law, not its exact draws.
    * Sparse ``X`` (any scipy sparse format) is read as CSR and never made dense: each tree copies only its own
      sample, and scoring goes 128 rows at a time; the scores are the same bits as for the dense matrix.
    * ``explain(X)`` returns one ``Explanation`` per row (per-feature attributions and a rationale).
    * ``verbose`` is accepted and ignored.
    """

    def __init__(
        self,
        *,
        n_estimators: int = _CORE["n_estimators"],
        max_samples: Any = _from_core(_CORE["max_samples"]),
        contamination: Any = _from_core(_CORE["contamination"]),
        max_features: Any = _from_core(_CORE["max_features"]),
        bootstrap: bool = _CORE["bootstrap"],
        n_jobs: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    def __sklearn_tags__(self) -> Any:
        # Sparse input is taken as scikit-learn's forest takes it (any scipy format, read as CSR).
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # -- fitting -----------------------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> IsolationForest:
        """Fits the forest on X (rows are samples); ``y`` is ignored.

        ``sample_weight`` (one weight per row) decides which rows each tree draws, as in scikit-learn 1.9.

        Raises ``InvalidInputError`` subclasses for NaN/inf, empty input, fewer than two rows or values that are not
        numbers, ``InvalidParameterError`` for a bad parameter or bad weights.
        """
        X = self._validate(X, reset=True)
        weights = None if sample_weight is None else _sample_weight(sample_weight, X.shape[0])
        model = getattr(self, "_model", None)
        if self.warm_start and model is not None:
            more = self.n_estimators - model.n_estimators
            if more < 0:
                raise InvalidParameterError(
                    f"n_estimators={self.n_estimators} must be larger or equal to the number of trees "
                    f"({model.n_estimators}) when warm_start==True"
                )
            if more == 0:
                warnings.warn(
                    "Warm-start fitting without increasing n_estimators does not fit new trees.",
                    UserWarning,
                    stacklevel=2,
                )
                return self
            self._set_model(model.grow(X, more, sample_weight=weights))
            return self
        names = getattr(self, "feature_names_in_", None)
        try:
            model = _native._IsolationForest.fit(
                X,
                n_estimators=self.n_estimators,
                max_samples=self.max_samples,
                contamination=self.contamination,
                max_features=self.max_features,
                bootstrap=bool(self.bootstrap),
                seed=_seed(self.random_state),
                n_jobs=effective_n_jobs(self.n_jobs),
                feature_names=None if names is None else [str(n) for n in names],
                sample_weight=weights,
            )
        except EmptyInputError as e:
            # The core decides; the message is reworded in scikit-learn's terms, which its checks look for.
            what = "feature(s)" if X.shape[1] == 0 else "sample(s)"
            err = EmptyInputError(
                f"Found array with 0 {what} (shape={X.shape}) while a minimum of 1 is required by "
                f"{type(self).__name__} ({e})"
            )
            err.what = e.what
            raise err from e
        self._set_model(model)
        return self

    def _set_model(self, model: _native._IsolationForest) -> None:
        self._model = model
        self.offset_ = model.offset
        self.n_features_in_ = model.n_features
        self.max_samples_ = model.max_samples

    # -- scoring -----------------------------------------------------------------------------------------------

    def score_samples(self, X: Any) -> np.ndarray:
        """Opposite of the anomaly score of each row, in [-1, 0): the lower, the more anomalous."""
        return self._fitted().score_samples(self._validate(X, reset=False), n_jobs=effective_n_jobs(self.n_jobs))

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for anomalies, positive for inliers."""
        return self._fitted().decision_function(self._validate(X, reset=False), n_jobs=effective_n_jobs(self.n_jobs))

    def predict(self, X: Any) -> np.ndarray:
        """-1 for anomalies, +1 for inliers."""
        X = self._validate(X, reset=False)
        return self._fitted().predict(X, n_jobs=effective_n_jobs(self.n_jobs)).astype(np.int64, copy=False)

    def explain(self, X: Any) -> list[_native.Explanation]:
        """One explanation per row: the core's score (higher is more anomalous), threshold, verdict, per-feature
        attributions (most important first) and a one-sentence rationale."""
        return self._fitted().explain(self._validate(X, reset=False))

    # -- snapshots and pickling ----------------------------------------------------------------------------------

    def to_snapshot_bytes(self) -> bytes:
        """The fitted forest as the core's versioned snapshot (``IsolationForest::from_snapshot_bytes`` in Rust)."""
        return self._fitted().to_snapshot_bytes()

    @classmethod
    def from_snapshot_bytes(cls, data: bytes) -> IsolationForest:
        """A fitted estimator from snapshot bytes written by ``to_snapshot_bytes`` or by Rust."""
        model = _native._IsolationForest.from_snapshot_bytes(data)
        p = model.params
        est = cls(
            n_estimators=model.n_estimators,
            max_samples=_from_core(p["max_samples"]),
            contamination=_from_core(p["contamination"]),
            max_features=_from_core(p["max_features"]),
            bootstrap=p["bootstrap"],
            n_jobs=p["n_threads"],
            random_state=p["seed"],
        )
        if model.feature_names is not None:
            est.feature_names_in_ = np.asarray(model.feature_names, dtype=object)
        est._set_model(model)
        return est

    def __getstate__(self) -> dict[str, Any]:
        # object.__getstate__ may return the instance's own __dict__: copy before removing the native model.
        state = dict(super().__getstate__() if HAVE_SKLEARN else self.__dict__)
        model = state.pop("_model", None)
        if model is not None:
            state["_snapshot"] = model.to_snapshot_bytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        snapshot = state.pop("_snapshot", None)
        if snapshot is not None:
            state["_model"] = _native._IsolationForest.from_snapshot_bytes(snapshot)
        if HAVE_SKLEARN:
            super().__setstate__(state)
        else:
            self.__dict__.update(state)

    # -- helpers -----------------------------------------------------------------------------------------------

    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, "_model", None) is not None

    def _fitted(self) -> _native._IsolationForest:
        model = getattr(self, "_model", None)
        if model is None:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments "
                "before using this estimator."
            )
        return model

    def _validate(self, X: Any, *, reset: bool) -> Any:
        """X as a C-contiguous float64 matrix or a canonical float64 CSR matrix (any scipy sparse input), feature
        names checked (and recorded when ``reset``)."""
        if not reset:
            self._fitted()
        if _is_sparse(X):
            if HAVE_SKLEARN:
                _check_feature_names(self, X, reset=reset)
            elif reset:
                self.__dict__.pop("feature_names_in_", None)
            X = _as_csr(X)
            self._check_width(X, reset)
            return X
        fast = (
            type(X) is np.ndarray
            and X.dtype == np.float64
            and X.ndim == 2
            and X.flags.c_contiguous
            and getattr(self, "feature_names_in_", None) is None
        )
        if not fast:
            if HAVE_SKLEARN:
                _check_feature_names(self, X, reset=reset)
                try:
                    # NaN and emptiness are left to the core, which reports them with its own exceptions.
                    X = check_array(
                        X,
                        dtype=np.float64,
                        order="C",
                        ensure_all_finite=False,
                        ensure_min_samples=0,
                        ensure_min_features=0,
                        estimator=self,
                    )
                except ValueError as e:
                    raise InvalidInputError(str(e)) from e
            else:
                names = _feature_names(X)
                if reset:
                    if names is None:
                        self.__dict__.pop("feature_names_in_", None)
                    else:
                        self.feature_names_in_ = names
                else:
                    fitted = getattr(self, "feature_names_in_", None)
                    if fitted is not None and names is not None and list(names) != list(fitted):
                        raise InvalidInputError(
                            "The feature names should match those that were passed during fit."
                        )
                X = _as_matrix(X)
        self._check_width(X, reset)
        return X

    def _check_width(self, X: Any, reset: bool) -> None:
        if not reset and X.shape[1] != self.n_features_in_:
            err = DimensionMismatchError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {self.n_features_in_} "
                "features as input."
            )
            err.expected, err.got = self.n_features_in_, X.shape[1]
            raise err
