"""Sparse input: any scipy format, read as CSR, never made dense, scoring as the dense matrix does, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly import IsolationForest
from anomaly.exceptions import DimensionMismatchError, NonFiniteError

sp = pytest.importorskip("scipy.sparse")


def one_hot(n: int, d: int, density: float, seed: int):
    rng = np.random.default_rng(seed)
    x = sp.random(n, d, density=density, format="csr", random_state=rng, data_rvs=lambda k: rng.integers(1, 4, k))
    return x.astype(np.float64)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok"])
def test_every_format_scores_as_the_dense_matrix(fmt):
    x = one_hot(600, 40, 0.05, 1)
    dense = x.toarray()
    kw = dict(n_estimators=30, random_state=2, contamination=0.05)
    reference = IsolationForest(**kw).fit(dense)
    model = IsolationForest(**kw).fit(x.asformat(fmt))
    assert model.offset_ == reference.offset_
    for method in ("score_samples", "decision_function", "predict"):
        np.testing.assert_array_equal(getattr(model, method)(x.asformat(fmt)), getattr(reference, method)(dense))
        # A dense matrix scores on a model fitted sparse, and the other way round.
        np.testing.assert_array_equal(getattr(model, method)(dense), getattr(reference, method)(x))
    # Explanations too, row by row.
    assert [e.score for e in model.explain(x[:3])] == [e.score for e in reference.explain(dense[:3])]


def test_weights_warm_start_and_small_batches_on_sparse_input():
    x = one_hot(500, 30, 0.1, 3)
    dense = x.toarray()
    w = np.arange(500) % 4 + 1.0
    kw = dict(n_estimators=20, random_state=5, max_samples=100)
    a = IsolationForest(**kw).fit(x, sample_weight=w)
    b = IsolationForest(**kw).fit(dense, sample_weight=w)
    np.testing.assert_array_equal(a.score_samples(x[:5]), b.score_samples(dense[:5]))
    a.set_params(warm_start=True, n_estimators=30).fit(x)
    b.set_params(warm_start=True, n_estimators=30).fit(dense)
    np.testing.assert_array_equal(a.score_samples(x), b.score_samples(dense))


def test_the_callers_matrix_is_left_alone_and_bad_input_is_typed():
    # Duplicates and unsorted indices (not canonical): summed in a copy, as scipy would.
    x = sp.csr_matrix((np.array([1.0, 2.0, 5.0]), np.array([2, 2, 0]), np.array([0, 2, 3, 3])), shape=(3, 3))
    x.has_canonical_format = False
    before = (x.data.copy(), x.indices.copy(), x.indptr.copy())
    rows = sp.vstack([x] * 20).tocsr()
    model = IsolationForest(n_estimators=10, random_state=0).fit(rows)
    np.testing.assert_array_equal(
        model.score_samples(x), IsolationForest(n_estimators=10, random_state=0).fit(rows.toarray()).score_samples(x.toarray())
    )
    np.testing.assert_array_equal(x.data, before[0])
    np.testing.assert_array_equal(x.indices, before[1])
    bad = sp.csr_matrix(np.array([[0.0, np.nan], [1.0, 0.0]]))
    with pytest.raises(NonFiniteError) as e:
        IsolationForest().fit(bad)
    assert (e.value.row, e.value.column) == (0, 1)
    with pytest.raises(DimensionMismatchError):
        model.score_samples(sp.csr_matrix(np.ones((2, 4))))


def test_strided_values_odd_index_types_and_too_wide_matrices():
    dense = np.zeros((50, 6))
    dense[::3, 2] = 1.0
    dense[1::4, 5] = 2.0
    reference = IsolationForest(n_estimators=10, random_state=1).fit(dense)
    x = sp.csr_matrix(dense)
    # Values in a strided view and unsigned indices are read (copied), as scikit-learn reads them.
    strided = sp.csr_matrix((np.repeat(x.data, 2)[::2], x.indices.astype(np.uint32), x.indptr.astype(np.uint64)), shape=x.shape)
    np.testing.assert_array_equal(reference.score_samples(strided), reference.score_samples(dense))
    wide = sp.csr_matrix((np.ones(2), np.array([0, 1]), np.array([0, 1, 2])), shape=(2, 2**25))
    with pytest.raises(ValueError, match="at most 16777216"):
        IsolationForest(n_estimators=5).fit(wide)
