"""scikit-learn's own estimator checks on anomaly.IsolationForest."""

from __future__ import annotations

import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from anomaly import IsolationForest  # noqa: E402

_NO_SAMPLE_WEIGHT = "fit(sample_weight=...) raises NotImplementedError: the core grows unweighted trees"

# Every check that cannot pass, with the reason. Only sample weights: the core has none.
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    name: _NO_SAMPLE_WEIGHT
    for name in (
        "check_sample_weights_pandas_series",
        "check_sample_weights_not_an_array",
        "check_sample_weights_list",
        "check_sample_weights_shape",
        "check_sample_weights_not_overwritten",
        "check_sample_weight_equivalence_on_dense_data",
        "check_all_zero_sample_weights_error",
    )
}


@parametrize_with_checks(
    [IsolationForest(n_estimators=20)], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
