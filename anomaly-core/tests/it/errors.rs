//! Bad input reaches a typed error, never a panic.

use anomaly_core::{
    Contamination, EmaParams, Error, IsolationForest, IsolationForestParams, MaxFeatures,
    MaxSamples, MovingAverageParams, StreamingDetector, StreamingIsolationForestParams,
};
use ndarray::{Array2, array};

fn small_model() -> IsolationForest {
    IsolationForestParams::new()
        .n_estimators(10)
        .fit(crate::gaussian(50, 3, 1).view())
        .unwrap()
}

#[test]
fn non_finite_values_are_located() {
    let mut x = crate::gaussian(20, 3, 0);
    x[[7, 2]] = f64::NAN;
    match IsolationForestParams::new().fit(x.view()) {
        Err(Error::NonFinite {
            row: 7,
            column: 2,
            value,
        }) => assert!(value.is_nan()),
        other => panic!("{other:?}"),
    }
    x[[7, 2]] = f64::INFINITY;
    let model = small_model();
    assert!(matches!(
        model.score(x.view()),
        Err(Error::NonFinite {
            row: 7,
            column: 2,
            ..
        })
    ));
    assert!(matches!(
        model.score_row(&[0.0, f64::NEG_INFINITY, 0.0]),
        Err(Error::NonFinite { column: 1, .. })
    ));
}

#[test]
fn empty_and_mismatched_input() {
    let empty = Array2::<f64>::zeros((0, 3));
    assert!(matches!(
        IsolationForestParams::new().fit(empty.view()),
        Err(Error::EmptyInput { .. })
    ));
    let no_cols = Array2::<f64>::zeros((5, 0));
    assert!(matches!(
        IsolationForestParams::new().fit(no_cols.view()),
        Err(Error::EmptyInput { .. })
    ));
    let model = small_model();
    assert_eq!(
        model.score(array![[1.0, 2.0]].view()).unwrap_err(),
        Error::DimensionMismatch {
            expected: 3,
            got: 2
        }
    );
    assert_eq!(
        model.score_row(&[1.0; 4]).unwrap_err(),
        Error::DimensionMismatch {
            expected: 3,
            got: 4
        }
    );
    let names = vec!["a".to_string()];
    assert!(matches!(
        IsolationForestParams::new()
            .feature_names(Some(names))
            .fit(crate::gaussian(5, 3, 0).view()),
        Err(Error::DimensionMismatch {
            expected: 1,
            got: 3
        })
    ));
}

#[test]
fn invalid_parameters_are_named() {
    let x = crate::gaussian(50, 3, 0);
    let cases = [
        (IsolationForestParams::new().n_estimators(0), "n_estimators"),
        (
            IsolationForestParams::new().contamination(Contamination::Fraction(0.6)),
            "contamination",
        ),
        (
            IsolationForestParams::new().contamination(Contamination::Fraction(0.0)),
            "contamination",
        ),
        (
            IsolationForestParams::new().contamination(Contamination::Fraction(f64::NAN)),
            "contamination",
        ),
        (
            IsolationForestParams::new().max_samples(MaxSamples::Fraction(1.5)),
            "max_samples",
        ),
        (
            IsolationForestParams::new().max_samples(MaxSamples::Count(0)),
            "max_samples",
        ),
        (
            IsolationForestParams::new().max_samples(MaxSamples::Count(1)),
            "max_samples",
        ),
        (
            IsolationForestParams::new().max_features(MaxFeatures::Count(4)),
            "max_features",
        ),
        (
            IsolationForestParams::new().max_features(MaxFeatures::Fraction(0.0)),
            "max_features",
        ),
        (IsolationForestParams::new().n_threads(Some(0)), "n_threads"),
    ];
    for (params, name) in cases {
        match params.fit(x.view()) {
            Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(MovingAverageParams::new().window(0).build().is_err());
    assert!(MovingAverageParams::new().threshold(-1.0).build().is_err());
    assert!(EmaParams::new().alpha(0.0).build().is_err());
    assert!(EmaParams::new().alpha(1.5).build().is_err());
    assert!(
        StreamingIsolationForestParams::new()
            .smoothing_alpha(0.0)
            .build()
            .is_err()
    );
    assert!(
        StreamingIsolationForestParams::new()
            .warmup(5000)
            .build()
            .is_err()
    );
}

#[test]
fn corrupt_and_foreign_snapshots_are_refused() {
    let model = small_model();
    let bytes = model.to_snapshot_bytes();
    let unsupported =
        |r: Result<IsolationForest, Error>| matches!(r, Err(Error::UnsupportedSnapshot { .. }));
    assert!(unsupported(IsolationForest::from_snapshot_bytes(b"")));
    assert!(unsupported(IsolationForest::from_snapshot_bytes(
        b"\x00\xff garbage"
    )));
    assert!(unsupported(IsolationForest::from_snapshot_bytes(
        &bytes[..bytes.len() / 2]
    )));
    let text = String::from_utf8(bytes.clone()).unwrap();
    let current = format!("\"version\":{}", anomaly_core::snapshot::SNAPSHOT_VERSION);
    assert!(text.contains(&current), "{text:.80}");
    let future = text.replacen(&current, "\"version\":99", 1);
    match IsolationForest::from_snapshot_bytes(future.as_bytes()) {
        Err(Error::UnsupportedSnapshot { reason }) => {
            assert!(reason.contains("version 99"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let other_format = text.replacen("anomaly-snapshot", "pickle", 1);
    assert!(unsupported(IsolationForest::from_snapshot_bytes(
        other_format.as_bytes()
    )));
    // A structurally valid snapshot whose tree splits on a feature the model does not have.
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value["model"]["trees"][0]["features"][0] = serde_json::json!(7);
    let hostile = serde_json::to_vec(&value).unwrap();
    assert!(unsupported(IsolationForest::from_snapshot_bytes(&hostile)));
    // A snapshot of another kind of model.
    let ema = EmaParams::new().build().unwrap().to_snapshot_bytes();
    assert!(unsupported(IsolationForest::from_snapshot_bytes(&ema)));
}

#[test]
fn streaming_detectors_reject_bad_observations_without_learning() {
    let mut d = MovingAverageParams::new().build().unwrap();
    d.update(&[1.0, 2.0]).unwrap();
    assert_eq!(
        d.update(&[1.0]).unwrap_err(),
        Error::DimensionMismatch {
            expected: 2,
            got: 1
        }
    );
    assert!(matches!(
        d.score(&[f64::NAN, 1.0]),
        Err(Error::NonFinite { column: 0, .. })
    ));
    assert!(matches!(d.update(&[]), Err(Error::EmptyInput { .. })));
    let mut e = EmaParams::new().build().unwrap();
    let before = e.clone();
    let series = [1.0, 2.0, f64::INFINITY, 3.0];
    assert!(matches!(
        e.score_many_values(&series),
        Err(Error::NonFinite {
            row: 2,
            column: 0,
            ..
        })
    ));
    assert_eq!(
        e, before,
        "nothing is learnt from a series with a bad value"
    );
    let mut s = StreamingIsolationForestParams::new().build().unwrap();
    assert!(matches!(
        s.score_and_update(&[f64::NAN]),
        Err(Error::NonFinite { .. })
    ));
    assert_eq!(s.seen(), 0);
}
