"""IsolationForest: scikit-learn's API and conventions over the core."""

from __future__ import annotations

import numpy as np
import pytest

import anomaly
from anomaly import IsolationForest


def test_sign_conventions_match_scikit_learn(blobs):
    x, y = blobs
    model = IsolationForest(random_state=0).fit(x)
    samples = model.score_samples(x)
    decision = model.decision_function(x)
    assert model.offset_ == -0.5  # contamination="auto"
    np.testing.assert_array_equal(decision, samples - model.offset_)
    np.testing.assert_array_equal(model.predict(x), np.where(decision < 0, -1, 1))
    assert model.predict(x).dtype == np.int64
    assert np.all((samples < 0) & (samples >= -1))
    # Planted outliers score lower (more anomalous) than the rest.
    assert samples[y == 1].mean() < samples[y == 0].mean()
    assert set(model.predict(x[:10])) == {-1}


def test_fitted_attributes(blobs):
    x, _ = blobs
    model = IsolationForest(max_samples=100, random_state=1).fit(x)
    assert model.n_features_in_ == 4
    assert model.max_samples_ == 100
    assert not hasattr(model, "feature_names_in_")
    assert IsolationForest(max_samples=0.5, random_state=1).fit(x).max_samples_ == 250
    assert IsolationForest(random_state=1).fit(x[:100]).max_samples_ == 100


def test_contamination_sets_the_offset(blobs):
    x, _ = blobs
    model = IsolationForest(contamination=0.05, random_state=0).fit(x)
    flagged = (model.predict(x) == -1).mean()
    assert abs(flagged - 0.05) <= 0.01
    assert model.offset_ == pytest.approx(np.percentile(model.score_samples(x), 5.0))


def test_fit_predict_equals_fit_then_predict(blobs):
    x, _ = blobs
    a = IsolationForest(contamination=0.1, random_state=3).fit_predict(x)
    b = IsolationForest(contamination=0.1, random_state=3).fit(x).predict(x)
    np.testing.assert_array_equal(a, b)


def test_int_seed_is_reproducible_and_seeds_differ(blobs):
    x, _ = blobs
    a = IsolationForest(random_state=5).fit(x).score_samples(x)
    b = IsolationForest(random_state=5).fit(x).score_samples(x)
    c = IsolationForest(random_state=6).fit(x).score_samples(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_state_instances_and_none(blobs):
    x, _ = blobs
    a = IsolationForest(random_state=np.random.RandomState(0)).fit(x).score_samples(x)
    b = IsolationForest(random_state=np.random.RandomState(0)).fit(x).score_samples(x)
    np.testing.assert_array_equal(a, b)
    g = IsolationForest(random_state=np.random.default_rng(0)).fit(x).score_samples(x)
    assert g.shape == (500,)
    np.random.seed(11)
    n1 = IsolationForest().fit(x).score_samples(x)
    np.random.seed(11)
    n2 = IsolationForest().fit(x).score_samples(x)
    np.testing.assert_array_equal(n1, n2)  # None draws from numpy's global generator, as scikit-learn does


@pytest.mark.parametrize("n_jobs", [1, 2, -1, None])
def test_n_jobs_does_not_change_the_result(blobs, n_jobs):
    x, _ = blobs
    reference = IsolationForest(random_state=0, n_jobs=1).fit(x).score_samples(x)
    got = IsolationForest(random_state=0, n_jobs=n_jobs).fit(x).score_samples(x)
    np.testing.assert_array_equal(got, reference)


def test_warm_start_equals_a_fresh_fit(blobs):
    x, _ = blobs
    model = IsolationForest(n_estimators=40, random_state=0, warm_start=True).fit(x)
    model.set_params(n_estimators=100)
    model.fit(x)
    fresh = IsolationForest(n_estimators=100, random_state=0).fit(x)
    np.testing.assert_array_equal(model.score_samples(x), fresh.score_samples(x))
    with pytest.warns(UserWarning, match="does not fit new trees"):
        model.fit(x)
    model.set_params(n_estimators=50)
    with pytest.raises(anomaly.InvalidParameterError):
        model.fit(x)


def test_without_warm_start_a_refit_starts_over(blobs):
    x, _ = blobs
    model = IsolationForest(n_estimators=40, random_state=0).fit(x)
    model.set_params(n_estimators=60)
    model.fit(x)
    fresh = IsolationForest(n_estimators=60, random_state=0).fit(x)
    np.testing.assert_array_equal(model.score_samples(x), fresh.score_samples(x))


def test_dataframe_feature_names_and_explanations(blobs):
    pd = pytest.importorskip("pandas")
    x, _ = blobs
    df = pd.DataFrame(x, columns=["cpu", "mem", "disk", "net"])
    model = IsolationForest(random_state=0).fit(df)
    assert list(model.feature_names_in_) == ["cpu", "mem", "disk", "net"]
    row = df.iloc[[100]].copy()  # an inlier, made extreme in one feature
    row["mem"] = 40.0
    (e,) = model.explain(row)
    (before,) = model.explain(df.iloc[[100]])
    assert e.score > before.score and e.threshold == 0.5 and e.is_anomaly == (e.score > 0.5)
    assert e.attributions[0].name == "mem" and e.attributions[0].label == "mem"
    assert e.attributions[0].is_atypical
    assert abs(sum(a.contribution for a in e.attributions) - 1.0) < 1e-9
    assert "`mem`" in e.rationale
    assert e.details["detector"] == "isolation_forest"
    # The explanation's score is the core's s(x) = -score_samples.
    assert e.score == -model.score_samples(row)[0]
    with pytest.raises(ValueError, match="feature names"):
        model.predict(df.rename(columns={"cpu": "gpu"}))


def test_dtypes_and_layouts_are_converted(blobs):
    x, _ = blobs
    model = IsolationForest(random_state=0).fit(x)
    reference = model.score_samples(x)
    np.testing.assert_array_equal(model.score_samples(np.asfortranarray(x)), reference)
    np.testing.assert_array_equal(model.score_samples(x.tolist()), reference)
    np.testing.assert_array_equal(model.score_samples(x[::-1])[::-1], reference)
    xi = np.round(x * 10).astype(np.int32)
    np.testing.assert_array_equal(model.score_samples(xi), model.score_samples(xi.astype(np.float64)))
    f32 = x.astype(np.float32)
    np.testing.assert_array_equal(model.score_samples(f32), model.score_samples(f32.astype(np.float64)))


def test_scikit_learn_integration(blobs):
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = blobs
    pipe = make_pipeline(StandardScaler(), IsolationForest(random_state=0))
    assert pipe.fit(x).predict(x[:10]).tolist() == [-1] * 10
    c = clone(IsolationForest(n_estimators=7, contamination=0.1))
    assert c.get_params()["n_estimators"] == 7 and not hasattr(c, "offset_")

    def scorer(est, X, y):
        from sklearn.metrics import roc_auc_score

        return roc_auc_score(y, -est.score_samples(X))

    search = GridSearchCV(
        IsolationForest(random_state=0), {"max_samples": [64, 256]}, scoring=scorer, cv=StratifiedKFold(3, shuffle=True, random_state=0)
    ).fit(x, y)
    assert search.best_score_ > 0.9


def test_defaults_come_from_the_core():
    import inspect

    from anomaly import _native

    core = _native.isolation_forest_defaults()
    sig = inspect.signature(IsolationForest.__init__).parameters
    assert sig["n_estimators"].default == core["n_estimators"] == 100
    assert sig["max_samples"].default == "auto" and sig["contamination"].default == "auto"
    assert sig["max_features"].default == 1.0 and sig["bootstrap"].default is False
    try:
        from sklearn.ensemble import IsolationForest as Sk
    except ImportError:
        return
    sk = inspect.signature(Sk.__init__).parameters
    for name in ("n_estimators", "max_samples", "contamination", "max_features", "bootstrap", "n_jobs",
                 "random_state", "verbose", "warm_start"):
        assert sig[name].default == sk[name].default, name


def test_max_features_and_bootstrap_are_applied(blobs):
    x, _ = blobs
    base = IsolationForest(random_state=0).fit(x).score_samples(x)
    assert not np.array_equal(IsolationForest(random_state=0, max_features=2).fit(x).score_samples(x), base)
    assert not np.array_equal(IsolationForest(random_state=0, bootstrap=True).fit(x).score_samples(x), base)
    # 1.0 (scikit-learn's default) and every feature by count are the same setting.
    np.testing.assert_array_equal(IsolationForest(random_state=0, max_features=4).fit(x).score_samples(x), base)


def test_small_batches_score_like_large_ones(blobs):
    # Small batches take the core's row-by-row path; the bits must equal the block path's.
    x, _ = blobs
    model = IsolationForest(random_state=0, contamination=0.1).fit(x)
    samples, decision, predict = model.score_samples(x), model.decision_function(x), model.predict(x)
    for n in (1, 2, 7, 31, 32, 33):
        np.testing.assert_array_equal(model.score_samples(x[:n]), samples[:n])
        np.testing.assert_array_equal(model.decision_function(x[:n]), decision[:n])
        np.testing.assert_array_equal(model.predict(x[:n]), predict[:n])
    bad = x[:5].copy()
    bad[3, 1] = np.nan
    with pytest.raises(anomaly.NonFiniteError) as info:
        model.predict(bad)
    assert (info.value.row, info.value.column) == (3, 1)
