"""Bad input and misuse raise the package's exceptions (ValueError subclasses for bad input)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import anomaly
from anomaly import IsolationForest
from anomaly.exceptions import (
    AnomalyError,
    CorruptModelError,
    DimensionMismatchError,
    EmptyInputError,
    InvalidInputError,
    InvalidParameterError,
    InvalidRecordError,
    NonFiniteError,
    NotEnoughSamplesError,
    NotFittedError,
)


@pytest.fixture
def fitted(blobs):
    return IsolationForest(n_estimators=20, random_state=0).fit(blobs[0])


def test_hierarchy():
    for cls in (InvalidInputError, InvalidParameterError, CorruptModelError, NotFittedError):
        assert issubclass(cls, AnomalyError) and issubclass(cls, ValueError)
    for cls in (DimensionMismatchError, NonFiniteError, EmptyInputError, NotEnoughSamplesError, InvalidRecordError):
        assert issubclass(cls, InvalidInputError)
    assert issubclass(NotFittedError, AttributeError)
    sk = pytest.importorskip("sklearn.exceptions")
    assert issubclass(NotFittedError, sk.NotFittedError)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(blobs, fitted, bad):
    x = blobs[0].copy()
    x[7, 2] = bad
    with pytest.raises(NonFiniteError) as info:
        IsolationForest().fit(x)
    assert (info.value.row, info.value.column) == (7, 2)
    with pytest.raises(NonFiniteError) as info:
        fitted.predict(x)
    assert (info.value.row, info.value.column) == (7, 2)
    assert np.isnan(info.value.value) if np.isnan(bad) else info.value.value == bad


def test_wrong_shape(blobs, fitted):
    x = blobs[0]
    with pytest.raises(DimensionMismatchError) as info:
        fitted.score_samples(x[:, :3])
    assert (info.value.expected, info.value.got) == (4, 3)
    with pytest.raises(InvalidInputError):
        fitted.predict(x[0])  # 1-D
    with pytest.raises(InvalidInputError):
        IsolationForest().fit(x.reshape(10, 50, 4))  # 3-D


def test_wrong_dtype(blobs, fitted):
    with pytest.raises(InvalidInputError, match="could not convert"):
        IsolationForest().fit(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(InvalidInputError, match="Complex"):
        fitted.predict(blobs[0][:5].astype(np.complex128))


def test_empty_and_too_small(blobs):
    x = blobs[0]
    with pytest.raises(EmptyInputError):
        IsolationForest().fit(x[:0])
    with pytest.raises(EmptyInputError):
        IsolationForest().fit(np.empty((10, 0)))
    with pytest.raises(NotEnoughSamplesError) as info:
        IsolationForest().fit(x[:1])
    assert (info.value.needed, info.value.got) == (2, 1)


def test_unfitted(blobs):
    model = IsolationForest()
    for method in (model.predict, model.score_samples, model.decision_function, model.explain):
        with pytest.raises(NotFittedError):
            method(blobs[0])
    with pytest.raises(NotFittedError):
        model.to_snapshot_bytes()


@pytest.mark.parametrize(
    "params, name",
    [
        ({"n_estimators": 0}, "n_estimators"),
        ({"n_estimators": -3}, "n_estimators"),
        ({"contamination": 0.7}, "contamination"),
        ({"contamination": "most"}, "contamination"),
        ({"max_samples": 0}, "max_samples"),
        ({"max_samples": 1.5}, "max_samples"),
        ({"max_samples": "all"}, "max_samples"),
        ({"max_features": 9}, "max_features"),
        ({"max_features": 0.0}, "max_features"),
        ({"n_jobs": 0}, "n_jobs"),
    ],
)
def test_bad_parameters(blobs, params, name):
    with pytest.raises(InvalidParameterError) as info:
        IsolationForest(**params).fit(blobs[0])
    assert info.value.parameter == name


def test_bad_random_state(blobs):
    with pytest.raises(InvalidParameterError):
        IsolationForest(random_state=-1).fit(blobs[0])
    with pytest.raises(InvalidParameterError):
        IsolationForest(random_state="seed").fit(blobs[0])


def test_bad_sample_weights_raise_scikit_learns_errors(blobs):
    x = blobs[0]
    n = len(x)
    cases = [
        (np.ones(n - 1), r"sample_weight.shape == \(499,\), expected \(500,\)!"),
        (np.ones((n, 1)), "Sample weights must be 1D array or scalar"),
        (np.r_[np.nan, np.ones(n - 1)], "Input sample_weight contains NaN."),
        (np.r_[np.inf, np.ones(n - 1)], "contains infinity"),
        (np.zeros(n), "Sample weights must contain at least one non-zero number."),
        (0, "Sample weights must contain at least one non-zero number."),
        (np.r_[-1.0, np.ones(n - 1)], "negative"),
        # numpy's choice refuses fewer rows of positive weight than each tree draws without replacement.
        (np.r_[np.ones(200), np.zeros(n - 200)], "200 rows have a non-zero weight, fewer than the 256"),
        (["a"] * n, "cannot be read as numbers"),
    ]
    for weights, message in cases:
        with pytest.raises(ValueError, match=message) as raised:
            IsolationForest(n_estimators=5).fit(x, sample_weight=weights)
        assert isinstance(raised.value, InvalidParameterError)
    # With replacement, one row of positive weight is enough, as in scikit-learn.
    IsolationForest(n_estimators=5, bootstrap=True).fit(x, sample_weight=np.r_[1.0, np.zeros(n - 1)])


def test_sample_weights_are_read_not_written(blobs):
    x = blobs[0]
    weights = np.arange(len(x), dtype=np.float64) % 3
    weights[weights == 0] = 0.5
    kept = weights.copy()
    a = IsolationForest(n_estimators=20, random_state=4).fit(x, sample_weight=weights)
    assert np.array_equal(weights, kept)
    # A list, a scalar and float32 read the same; scaling every weight changes nothing.
    b = IsolationForest(n_estimators=20, random_state=4).fit(x, sample_weight=list(weights))
    assert np.array_equal(a.score_samples(x), b.score_samples(x))
    c = IsolationForest(n_estimators=20, random_state=4).fit(x, sample_weight=weights * 4.0)
    assert np.array_equal(a.score_samples(x), c.score_samples(x))
    d = IsolationForest(n_estimators=20, random_state=4).fit(x, sample_weight=2.0)
    e = IsolationForest(n_estimators=20, random_state=4).fit(x, sample_weight=np.ones(len(x)))
    assert np.array_equal(d.score_samples(x), e.score_samples(x))
    # fit_predict routes the weights to fit.
    assert np.array_equal(
        IsolationForest(n_estimators=20, random_state=4).fit_predict(x, sample_weight=weights), a.predict(x)
    )


def test_corrupt_snapshots(fitted):
    good = fitted.to_snapshot_bytes()
    assert b'"version":2' in good
    for bad in (b"", b"not json", good[: len(good) // 2], good.replace(b'"version":2', b'"version":99')):
        with pytest.raises(CorruptModelError):
            IsolationForest.from_snapshot_bytes(bad)
    state = fitted.__getstate__()
    state["_snapshot"] = b'{"format":"other","version":1}'
    with pytest.raises(CorruptModelError):
        pickle.loads(pickle.dumps(fitted)).__setstate__(state)
    ema = anomaly.Ema().to_snapshot_bytes()
    with pytest.raises(CorruptModelError, match="ema"):
        IsolationForest.from_snapshot_bytes(ema)
    with pytest.raises(CorruptModelError):
        anomaly.MovingAverage.from_snapshot_bytes(ema)


def test_streaming_bad_input():
    d = anomaly.MovingAverage(window=3)
    d.update([1.0, 2.0])
    with pytest.raises(DimensionMismatchError):
        d.update([1.0, 2.0, 3.0])
    with pytest.raises(NonFiniteError):
        d.update([np.nan, 1.0])
    with pytest.raises(NonFiniteError) as info:
        d.score_many(np.array([[1.0, 2.0], [1.0, np.inf]]))
    assert info.value.row == 1
    assert d.dims == 2
    with pytest.raises(InvalidParameterError):
        anomaly.Ema(alpha=2.0)
    with pytest.raises(InvalidParameterError):
        anomaly.StreamingIsolationForest(warmup=1)


def test_engine_bad_records():
    engine = anomaly.Engine(min_training_records=5)
    with pytest.raises(InvalidRecordError):
        engine.observe("k", [1, 2, 3])
    with pytest.raises(TypeError):
        engine.observe("k", {"x": object()})
    with pytest.raises(InvalidParameterError):
        anomaly.Engine(min_training_records=1)


def test_records_nested_too_deeply_or_containing_themselves():
    # The converter stops at 128 levels (serde_json's limit) instead of overflowing the stack.
    engine = anomaly.Engine(min_training_records=5)
    looped = {}
    looped["a"] = looped
    deep = {"leaf": 1}
    for _ in range(100_000):
        deep = {"a": deep}
    listed = []
    listed.append(listed)
    for record, says in ((looped, "containing itself"), (deep, "128 levels"), ({"x": listed}, "containing itself")):
        for call in (engine.observe, engine.score):
            with pytest.raises(InvalidRecordError, match=says):
                call("k", record)
        with pytest.raises(InvalidRecordError, match=says):
            engine.observe_many("k", [record])
    # A dict that holds itself twice (2**128 paths for a depth-only check), and one sub-object shared at every
    # level (no cycle, but 2**100 values once expanded): refused at once.
    twice = {}
    twice["a"] = twice
    twice["b"] = twice
    with pytest.raises(InvalidRecordError, match="containing itself"):
        engine.observe("k", twice)
    shared = {"leaf": 1}
    for _ in range(100):
        shared = {"a": shared, "b": shared}
    with pytest.raises(InvalidRecordError, match="values"):
        engine.observe("k", shared)
    assert engine.keys() == []
    # 128 levels convert; the engine itself refuses records nested deeper than its own limit (32).
    ok = {"leaf": 1}
    for _ in range(126):
        ok = {"a": ok}
    with pytest.raises(InvalidRecordError, match="deeper than 32"):
        engine.observe("k", ok)


def test_huge_buffer_sizes_grow_with_the_data():
    # A window of 2**40 allocated nothing up front (it used to abort the process on allocation).
    d = anomaly.MovingAverage(window=2**40)
    for i in range(50):
        assert d.update([float(i)]) is None
    assert pickle.loads(pickle.dumps(d)).params["window"] == 2**40
    for name in ("window_size", "threshold_window", "batch_size"):
        s = anomaly.StreamingIsolationForest(warmup=20, n_estimators=4, **{name: 2**40})
        for i in range(40):
            s.update([float(i % 5)])
        assert pickle.loads(pickle.dumps(s)).params[name] == 2**40
    with pytest.raises(InvalidParameterError, match="n_estimators"):
        anomaly.StreamingIsolationForest(n_estimators=2**40)
    with pytest.raises(InvalidParameterError, match="n_estimators"):
        IsolationForest(n_estimators=2**40).fit(np.zeros((10, 2)))
