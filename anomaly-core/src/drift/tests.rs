// Statistical tests report what they measured.
#![allow(clippy::print_stderr)]

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

const D: usize = 5;
const REFERENCE_ROWS: usize = 2_000;

fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

fn names() -> Vec<String> {
    (0..D).map(|j| format!("f{j}")).collect()
}

/// A detector with default parameters on a standard normal reference, and the stream that continues it.
fn detector(seed: u64) -> (DriftDetector, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x =
        Array2::from_shape_vec((REFERENCE_ROWS, D), normals(&mut rng, REFERENCE_ROWS * D)).unwrap();
    let scores = normals(&mut rng, REFERENCE_ROWS);
    let det = DriftDetector::new(DriftParams::new(), x.view(), &scores, Some(names())).unwrap();
    (det, rng)
}

/// Observes `n` standard normal rows, feature `shift.0` moved by `shift.1`, scores moved by `score_shift`.
fn stream(
    det: &mut DriftDetector,
    rng: &mut ChaCha8Rng,
    n: usize,
    shift: Option<(usize, f64)>,
    score_shift: f64,
) -> Vec<DriftReport> {
    let mut reports = Vec::new();
    for _ in 0..n {
        let mut row = normals(rng, D);
        if let Some((j, by)) = shift {
            row[j] += by;
        }
        let score = normals(rng, 1)[0] + score_shift;
        if let Some(r) = det.observe(&row, score).unwrap() {
            reports.push(r);
        }
    }
    reports
}

#[test]
fn a_one_std_mean_shift_in_one_of_five_features_is_reported_alone() {
    let runs = 100;
    let (mut hits, mut min_psi, mut max_other) = (0, f64::INFINITY, 0.0f64);
    for seed in 0..runs {
        let (mut det, mut rng) = detector(seed);
        let k = (seed % D as u64) as usize;
        let reports = stream(&mut det, &mut rng, 500, Some((k, 1.0)), 0.0);
        assert_eq!(reports.len(), 1, "one check when the window fills");
        let r = &reports[0];
        let only_k = r.drifted && r.features.len() == 1 && r.features[0].index == k;
        hits += usize::from(only_k && r.score_psi <= 0.2);
        min_psi = min_psi.min(r.feature_psi[k]);
        for (j, &p) in r.feature_psi.iter().enumerate() {
            if j != k {
                max_other = max_other.max(p);
            }
        }
        if seed == 0 {
            assert_eq!(r.features[0].name, "f0");
            assert_eq!(r.max_psi, r.features[0].psi);
            assert_eq!((r.window, r.checked_at), (500, 500));
        }
    }
    eprintln!(
        "feature shift of 1 std: {hits}/{runs} detected alone; shifted PSI ≥ {min_psi:.3}, others ≤ {max_other:.3}"
    );
    assert!(hits >= 95, "{hits} of {runs}");
}

#[test]
fn a_shift_in_the_score_distribution_is_reported() {
    let runs = 100;
    let (mut hits, mut min_psi) = (0, f64::INFINITY);
    for seed in 0..runs {
        let (mut det, mut rng) = detector(500 + seed);
        let r = stream(&mut det, &mut rng, 500, None, 1.0).remove(0);
        hits += usize::from(r.drifted && r.score_psi > 0.2 && r.features.is_empty());
        min_psi = min_psi.min(r.score_psi);
    }
    eprintln!("score shift of 1 std: {hits}/{runs} detected; score PSI ≥ {min_psi:.3}");
    assert!(hits >= 95, "{hits} of {runs}");
}

/// 40 seeds × 30 checks of fresh samples from the reference distribution. Measured: no false alarm in 1,200 checks,
/// largest PSI 0.085. Asserted: at most 1 % false alarms.
#[test]
fn fresh_samples_of_the_reference_distribution_rarely_alarm() {
    let (mut checks, mut alarms, mut max_psi) = (0, 0, 0.0f64);
    for seed in 0..40 {
        let (mut det, mut rng) = detector(10_000 + seed);
        for r in stream(&mut det, &mut rng, 500 + 29 * 100, None, 0.0) {
            checks += 1;
            alarms += usize::from(r.drifted);
            max_psi = max_psi.max(r.max_psi);
        }
    }
    eprintln!("no drift: {alarms} false alarms in {checks} checks; largest PSI {max_psi:.3}");
    assert_eq!(checks, 1_200);
    assert!(alarms * 100 <= checks, "{alarms} of {checks}");
}

#[test]
fn checks_run_when_the_window_fills_then_every_check_every() {
    let (mut det, mut rng) = detector(1);
    let at: Vec<u64> = stream(&mut det, &mut rng, 1_050, None, 0.0)
        .iter()
        .map(|r| r.checked_at)
        .collect();
    assert_eq!(at, [500, 600, 700, 800, 900, 1_000]);
    assert_eq!(det.window_len(), 500);
    assert_eq!(det.seen(), 1_050);
}

#[test]
fn check_batch_agrees_with_the_window() {
    let (mut det, mut rng) = detector(2);
    let mut rows = Vec::new();
    let mut scores = Vec::new();
    let mut last = None;
    for i in 0..700 {
        let mut row = normals(&mut rng, D);
        row[3] += 0.5;
        let s = normals(&mut rng, 1)[0];
        if i >= 200 {
            rows.extend_from_slice(&row);
            scores.push(s);
        }
        last = det.observe(&row, s).unwrap().or(last);
    }
    let from_window = last.unwrap();
    let x = Array2::from_shape_vec((500, D), rows).unwrap();
    let batch = det.check_batch(x.view(), &scores).unwrap();
    assert_eq!(batch, from_window);
    assert_eq!(batch.features[0].name, "f3");
}

#[test]
fn constant_and_discrete_columns() {
    // Column 0 constant, column 1 is 0 for 70 % of rows and 1 otherwise.
    let n = 1_000;
    let x = Array2::from_shape_fn((n, 2), |(i, j)| {
        if j == 0 {
            3.0
        } else if i % 10 < 7 {
            0.0
        } else {
            1.0
        }
    });
    let scores: Vec<f64> = (0..n).map(|i| (i % 100) as f64).collect();
    let params = DriftParams::new().window(100).check_every(100);
    let det = DriftDetector::new(params, x.view(), &scores, None).unwrap();
    let same = Array2::from_shape_fn(
        (100, 2),
        |(i, j)| if j == 0 { 3.0 } else { f64::from(i % 10 >= 7) },
    );
    let sc: Vec<f64> = (0..100).map(f64::from).collect();
    let r = det.check_batch(same.view(), &sc).unwrap();
    assert!(!r.drifted && r.max_psi < 1e-12, "{r:?}");
    // A tenth of the constant column moves above its value (PSI ≈ 0.69); the ones become 90 % (PSI ≈ 1.8).
    let moved = Array2::from_shape_fn((100, 2), |(i, j)| match j {
        0 if i < 10 => 4.0,
        0 => 3.0,
        _ => f64::from(i % 10 >= 1),
    });
    let r = det.check_batch(moved.view(), &sc).unwrap();
    assert!(r.drifted);
    assert_eq!(
        r.features.iter().map(|f| f.index).collect::<Vec<_>>(),
        [1, 0]
    );
    assert_eq!(r.features[1].name, "x0");
    // Values below the constant tie with it: same bin, no drift.
    let below = Array2::from_shape_fn(
        (100, 2),
        |(i, j)| if j == 0 { 2.0 } else { f64::from(i % 10 >= 7) },
    );
    assert!(!det.check_batch(below.view(), &sc).unwrap().drifted);
}

#[test]
fn bad_input_is_refused_and_nothing_is_learnt() {
    let (mut det, _) = detector(3);
    // NaN is not equal to itself, so the error is matched rather than compared.
    assert!(matches!(
        det.observe(&[0.0, 0.0, f64::NAN, 0.0, 0.0], 0.0),
        Err(Error::NonFinite {
            row: 0,
            column: 2,
            ..
        })
    ));
    assert_eq!(
        det.observe(&[0.0; D], f64::INFINITY),
        Err(Error::NonFinite {
            row: 0,
            column: D,
            value: f64::INFINITY
        })
    );
    assert_eq!(
        det.observe(&[0.0; 4], 0.0),
        Err(Error::DimensionMismatch {
            expected: D,
            got: 4
        })
    );
    assert_eq!((det.seen(), det.window_len()), (0, 0));

    let x = Array2::<f64>::zeros((3, D));
    assert_eq!(
        det.check_batch(x.view(), &[0.0, 0.0]),
        Err(Error::DimensionMismatch {
            expected: 3,
            got: 2
        })
    );
    assert_eq!(
        det.check_batch(x.view(), &[0.0, f64::NAN, 0.0])
            .map_err(|e| matches!(
                e,
                Error::NonFinite {
                    row: 1,
                    column: D,
                    ..
                }
            )),
        Err(true)
    );
    assert!(matches!(
        det.check_batch(Array2::<f64>::zeros((0, D)).view(), &[]),
        Err(Error::EmptyInput { .. })
    ));
    assert_eq!(
        det.check_batch(Array2::<f64>::zeros((2, 3)).view(), &[0.0, 0.0]),
        Err(Error::DimensionMismatch {
            expected: D,
            got: 3
        })
    );
}

#[test]
fn construction_is_validated() {
    let x = Array2::from_shape_fn((50, 2), |(i, j)| (i * (j + 1)) as f64);
    let s: Vec<f64> = (0..50).map(f64::from).collect();
    let new = |p: DriftParams| DriftDetector::new(p, x.view(), &s, None).map(|_| ());
    for (params, name) in [
        (DriftParams::new().bins(1), "bins"),
        (DriftParams::new().bins(5_000), "bins"),
        (DriftParams::new().window(5), "window"),
        (DriftParams::new().check_every(0), "check_every"),
        (DriftParams::new().psi_threshold(f64::NAN), "psi_threshold"),
        (DriftParams::new().psi_threshold(0.0), "psi_threshold"),
        (DriftParams::new().min_fields(0), "min_fields"),
        (DriftParams::new().min_fields(3), "min_fields"),
    ] {
        assert!(
            matches!(new(params.clone()), Err(Error::InvalidParameter { name: n, .. }) if n == name),
            "{params:?}"
        );
    }
    assert!(new(DriftParams::new()).is_ok());
    assert!(matches!(
        DriftDetector::new(DriftParams::new(), x.view(), &s, Some(vec!["a".into()])),
        Err(Error::DimensionMismatch {
            expected: 1,
            got: 2
        })
    ));
    assert!(matches!(
        DriftDetector::new(DriftParams::new(), x.view(), &s[..5], None),
        Err(Error::NotEnoughSamples { needed: 10, got: 5 })
    ));
    assert!(matches!(
        DriftDetector::new(DriftParams::new(), x.view(), &[], None),
        Err(Error::EmptyInput { .. })
    ));
    assert!(matches!(
        DriftDetector::new(
            DriftParams::new(),
            Array2::<f64>::zeros((0, 2)).view(),
            &s,
            None
        ),
        Err(Error::EmptyInput { .. })
    ));
    let mut bad = x.clone();
    bad[[7, 1]] = f64::INFINITY;
    assert!(matches!(
        DriftDetector::new(DriftParams::new(), bad.view(), &s, None),
        Err(Error::NonFinite {
            row: 7,
            column: 1,
            ..
        })
    ));
}

#[test]
fn a_restored_detector_continues_identically_and_corrupt_state_is_refused() {
    let (mut det, mut rng) = detector(4);
    stream(&mut det, &mut rng, 650, Some((1, 0.3)), 0.0);
    let json = serde_json::to_string(&det).unwrap();
    let mut back: DriftDetector = serde_json::from_str(&json).unwrap();
    assert_eq!(back, det);
    let mut rng_b = rng.clone();
    let a = stream(&mut det, &mut rng, 300, Some((1, 1.0)), 0.0);
    let b = stream(&mut back, &mut rng_b, 300, Some((1, 1.0)), 0.0);
    assert_eq!(a, b);
    assert_eq!(a.len(), 3);

    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["ring"][0] = serde_json::json!(999);
    assert!(serde_json::from_value::<DriftDetector>(v).is_err());
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["ring"].as_array_mut().unwrap().pop();
    assert!(serde_json::from_value::<DriftDetector>(v).is_err());
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["head"] = serde_json::json!(500);
    assert!(serde_json::from_value::<DriftDetector>(v).is_err());
}

#[test]
fn detector_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DriftDetector>();
    assert_send_sync::<DriftReport>();
}

#[test]
fn ignored_columns_never_drift_and_survive_a_round_trip() {
    let (det, mut rng) = detector(41);
    let mut det = det.ignore_columns([2, 99]);
    let reports = stream(&mut det, &mut rng, 1_000, Some((2, 3.0)), 0.0);
    assert!(!reports.is_empty());
    assert!(reports.iter().all(|r| !r.drifted && r.features.is_empty()));
    let json = serde_json::to_string(&det).unwrap();
    let mut back: DriftDetector = serde_json::from_str(&json).unwrap();
    assert!(
        stream(&mut back, &mut rng, 500, Some((2, 3.0)), 0.0)
            .iter()
            .all(|r| !r.drifted)
    );
    // The other columns still drift.
    assert!(
        stream(&mut back, &mut rng, 1_000, Some((1, 3.0)), 0.0)
            .iter()
            .any(|r| r.drifted)
    );
}
