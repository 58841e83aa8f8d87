//! Invariants of the isolation forest, checked on generated data.

use anomaly_core::{
    Contamination, IsolationForest, IsolationForestParams, MaxFeatures, MaxSamples,
};
use ndarray::{Array2, Axis};
use proptest::prelude::*;

/// Matrices of 2–60 rows and 1–5 columns, values over a wide range, some columns constant.
fn matrix() -> impl Strategy<Value = Array2<f64>> {
    (2usize..60, 1usize..5).prop_flat_map(|(n, d)| {
        prop::collection::vec(prop_oneof![-1e6f64..1e6, -1.0f64..1.0, Just(0.0)], n * d)
            .prop_map(move |v| Array2::from_shape_vec((n, d), v).unwrap())
    })
}

fn params(seed: u64) -> IsolationForestParams {
    IsolationForestParams::new().n_estimators(25).seed(seed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn scores_are_finite_and_in_range(x in matrix(), seed in 0u64..1000) {
        let model = params(seed).fit(x.view()).unwrap();
        for s in model.score(x.view()).unwrap() {
            prop_assert!(s.is_finite() && s > 0.0 && s <= 1.0, "score {s}");
        }
        let far: Vec<f64> = vec![1e300; x.ncols()];
        let s = model.score_row(&far).unwrap();
        prop_assert!(s.is_finite() && s > 0.0 && s <= 1.0);
    }

    #[test]
    fn fit_is_deterministic_per_seed(x in matrix(), seed in 0u64..1000) {
        let a = params(seed).fit(x.view()).unwrap();
        let b = params(seed).fit(x.view()).unwrap();
        prop_assert_eq!(&a, &b);
    }

    #[test]
    fn snapshot_round_trip_scores_identically(x in matrix(), seed in 0u64..1000, frac in 0.05f64..0.5) {
        let model = params(seed).contamination(Contamination::Fraction(frac)).fit(x.view()).unwrap();
        let restored = IsolationForest::from_snapshot_bytes(&model.to_snapshot_bytes()).unwrap();
        prop_assert_eq!(&restored, &model);
        let (a, b) = (model.score(x.view()).unwrap(), restored.score(x.view()).unwrap());
        for (p, q) in a.iter().zip(&b) {
            prop_assert_eq!(p.to_bits(), q.to_bits());
        }
        prop_assert_eq!(model.offset().to_bits(), restored.offset().to_bits());
    }

    #[test]
    fn a_rows_score_does_not_depend_on_the_other_rows(x in matrix(), seed in 0u64..1000) {
        let model = params(seed).fit(x.view()).unwrap();
        let all = model.score(x.view()).unwrap();
        let reversed = x.slice(ndarray::s![..;-1, ..]).to_owned();
        let rev = model.score(reversed.view()).unwrap();
        let n = x.nrows();
        for i in 0..n {
            prop_assert_eq!(all[i].to_bits(), rev[n - 1 - i].to_bits());
            let one = model.score_row(x.row(i).as_slice().unwrap()).unwrap();
            prop_assert_eq!(all[i].to_bits(), one.to_bits());
        }
    }

    #[test]
    fn sklearn_views_agree(x in matrix(), frac in 0.01f64..0.5) {
        let model = params(3).contamination(Contamination::Fraction(frac)).fit(x.view()).unwrap();
        let s = model.score(x.view()).unwrap();
        let samples = model.score_samples(x.view()).unwrap();
        let decision = model.decision_function(x.view()).unwrap();
        let predicted = model.predict(x.view()).unwrap();
        for i in 0..x.nrows() {
            prop_assert_eq!(samples[i], -s[i]);
            prop_assert_eq!(decision[i], samples[i] - model.offset());
            let verdict = model.verdict_row(x.row(i).as_slice().unwrap()).unwrap();
            prop_assert_eq!(predicted[i] == -1, verdict.is_anomaly);
        }
    }
}

#[test]
fn one_and_many_threads_give_the_same_bits() {
    let x = crate::gaussian(5_000, 6, 11);
    let base = IsolationForestParams::new()
        .seed(5)
        .contamination(Contamination::Fraction(0.05));
    let serial = base.clone().n_threads(Some(1)).fit(x.view()).unwrap();
    for threads in [Some(2), Some(3), None] {
        let parallel = base.clone().n_threads(threads).fit(x.view()).unwrap();
        let a = serial.score(x.view()).unwrap();
        let b = parallel.score(x.view()).unwrap();
        assert!(
            a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{threads:?}"
        );
        assert_eq!(serial.offset().to_bits(), parallel.offset().to_bits());
    }
}

#[test]
fn a_planted_outlier_outranks_99_percent_of_inliers() {
    for seed in 0..5 {
        let mut x = crate::gaussian(1_000, 5, 100 + seed);
        x.row_mut(0).fill(6.0);
        let model = IsolationForestParams::new()
            .seed(seed)
            .fit(x.view())
            .unwrap();
        let s = model.score(x.view()).unwrap();
        let beaten = s.iter().skip(1).filter(|&&v| v < s[0]).count();
        assert!(
            beaten as f64 >= 0.99 * 999.0,
            "seed {seed}: outlier beats {beaten} of 999"
        );
        let why = model.explain_row(x.row(0).as_slice().unwrap()).unwrap();
        assert!(why.is_anomaly, "{}", why.rationale);
        assert!(why.attributions.iter().all(|a| a.contribution >= 0.0));
        let total: f64 = why.attributions.iter().map(|a| a.contribution).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }
}

#[test]
fn attributions_name_the_feature_that_isolates() {
    let mut x = crate::gaussian(500, 4, 9);
    x[[0, 2]] = 12.0;
    let names: Vec<String> = ["cpu", "mem", "latency", "errors"]
        .map(String::from)
        .to_vec();
    let model = IsolationForestParams::new()
        .feature_names(Some(names))
        .fit(x.view())
        .unwrap();
    let why = model.explain_row(x.row(0).as_slice().unwrap()).unwrap();
    assert_eq!(why.attributions[0].name.as_deref(), Some("latency"));
    assert!(
        why.attributions[0].contribution > 0.4,
        "{:?}",
        why.attributions
    );
    assert!(why.attributions[0].is_atypical());
    assert!(
        why.rationale
            .contains("`latency` = 12 is above the typical"),
        "{}",
        why.rationale
    );
}

#[test]
fn warm_start_equals_fitting_all_trees_at_once() {
    let x = crate::gaussian(2_000, 3, 4);
    let p = IsolationForestParams::new().seed(9);
    let grown = p
        .clone()
        .n_estimators(60)
        .fit(x.view())
        .unwrap()
        .grow(x.view(), 40)
        .unwrap();
    let direct = p.n_estimators(100).fit(x.view()).unwrap();
    assert_eq!(grown, direct);
    assert_eq!(grown.n_estimators(), 100);
}

#[test]
fn contamination_sets_the_matching_share_of_anomalies() {
    let x = crate::gaussian(4_000, 4, 2);
    for c in [0.01, 0.05, 0.1, 0.25] {
        let model = IsolationForestParams::new()
            .contamination(Contamination::Fraction(c))
            .fit(x.view())
            .unwrap();
        let flagged = model
            .predict(x.view())
            .unwrap()
            .iter()
            .filter(|&&p| p == -1)
            .count();
        let share = flagged as f64 / 4_000.0;
        assert!(
            (share - c).abs() < 0.002,
            "contamination {c}: flagged {share}"
        );
    }
    let auto = IsolationForestParams::new().fit(x.view()).unwrap();
    assert_eq!(auto.offset(), -0.5);
    assert_eq!(auto.threshold(), 0.5);
}

#[test]
fn parameters_resolve_as_scikit_learn() {
    let x = crate::gaussian(1_000, 10, 3);
    let m = IsolationForestParams::new().fit(x.view()).unwrap();
    assert_eq!(m.max_samples(), 256);
    let m = IsolationForestParams::new()
        .max_samples(MaxSamples::Fraction(0.5))
        .fit(x.view())
        .unwrap();
    assert_eq!(m.max_samples(), 500);
    let m = IsolationForestParams::new()
        .max_samples(MaxSamples::Count(5_000))
        .fit(x.view())
        .unwrap();
    assert_eq!(m.max_samples(), 1_000);
    let small = crate::gaussian(100, 2, 3);
    assert_eq!(
        IsolationForestParams::new()
            .fit(small.view())
            .unwrap()
            .max_samples(),
        100
    );
    // Subsets of features and bootstrap still score every row sensibly.
    for p in [
        IsolationForestParams::new().max_features(MaxFeatures::Count(3)),
        IsolationForestParams::new().max_features(MaxFeatures::Fraction(0.5)),
        IsolationForestParams::new().bootstrap(true),
    ] {
        let m = p.fit(x.view()).unwrap();
        let s = m.score(x.view()).unwrap();
        assert!(s.iter().all(|v| v.is_finite() && *v > 0.0 && *v <= 1.0));
    }
}

#[test]
fn column_major_input_scores_like_row_major() {
    let x = crate::gaussian(300, 4, 8);
    let model = IsolationForestParams::new().fit(x.view()).unwrap();
    let fortran = x.t().as_standard_layout().into_owned().reversed_axes();
    assert!(!fortran.is_standard_layout());
    let a = model.score(x.view()).unwrap();
    let b = model.score(fortran.view()).unwrap();
    assert_eq!(a, b);
    let refit = IsolationForestParams::new().fit(fortran.view()).unwrap();
    assert_eq!(refit, model);
    let _ = x.len_of(Axis(0));
}

#[test]
fn every_scoring_path_matches_single_rows() {
    // 10 features: 128-row column blocks; 60: 32-row blocks; 300: the row-major path. 333 rows leave short blocks.
    for d in [10, 60, 300] {
        let x = crate::gaussian(333, d, d as u64);
        let model = IsolationForestParams::new()
            .n_estimators(20)
            .fit(x.view())
            .unwrap();
        let batch = model.score(x.view()).unwrap();
        for (i, row) in x.outer_iter().enumerate() {
            let one = model.score_row(row.as_slice().unwrap()).unwrap();
            assert_eq!(batch[i].to_bits(), one.to_bits(), "d = {d}, row {i}");
        }
    }
}

/// 400 standard normal rows and a tight cluster of 40 rows in their tail, at (1.5, 1.5): rows 400..440.
fn two_clusters() -> Array2<f64> {
    let mut x = crate::gaussian(440, 2, 21);
    x.slice_mut(ndarray::s![400.., ..])
        .mapv_inplace(|v| 1.5 + 0.02 * v);
    x
}

#[test]
fn weights_decide_which_rows_the_trees_learn() {
    let x = two_clusters();
    let cluster = |scores: &ndarray::Array1<f64>| scores.slice(ndarray::s![400..]).mean().unwrap();
    let inliers = |scores: &ndarray::Array1<f64>| scores.slice(ndarray::s![..400]).mean().unwrap();
    for bootstrap in [false, true] {
        let params = IsolationForestParams::new()
            .n_estimators(100)
            .bootstrap(bootstrap)
            .seed(3);
        // Unweighted, the cluster is 9 % of the draws: dense, so its rows take many splits to isolate.
        let plain = params.fit(x.view()).unwrap().score(x.view()).unwrap();
        // Weight 0: no tree sees the cluster, so its rows sit in the sparse tail and are isolated early.
        let mut w = vec![1.0; 440];
        w[400..].fill(0.0);
        let unseen = params
            .fit_weighted(x.view(), &w)
            .unwrap()
            .score(x.view())
            .unwrap();
        assert!(
            cluster(&unseen) > cluster(&plain) + 0.05,
            "bootstrap {bootstrap}: {} against {}",
            cluster(&unseen),
            cluster(&plain)
        );
        // Weight 20: the cluster is two thirds of every tree's rows, so it looks more normal than the inliers.
        w[400..].fill(20.0);
        let heavy = params
            .fit_weighted(x.view(), &w)
            .unwrap()
            .score(x.view())
            .unwrap();
        assert!(
            cluster(&heavy) < cluster(&plain) - 0.02 && cluster(&heavy) < inliers(&heavy) - 0.05,
            "bootstrap {bootstrap}: {} against {} (inliers {})",
            cluster(&heavy),
            cluster(&plain),
            inliers(&heavy)
        );
    }
}

#[test]
fn weighted_fits_are_deterministic_across_threads_and_warm_start() {
    let x = two_clusters();
    let w: Vec<f64> = (0..440).map(|i| (i % 5) as f64).collect();
    let params = |threads| {
        IsolationForestParams::new()
            .n_estimators(40)
            .max_samples(MaxSamples::Count(128))
            .seed(9)
            .n_threads(Some(threads))
    };
    let one = params(1).fit_weighted(x.view(), &w).unwrap();
    let two = params(2).fit_weighted(x.view(), &w).unwrap();
    let a = one.score(x.view()).unwrap();
    let b = two.score(x.view()).unwrap();
    assert!(a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()));
    // 25 weighted trees and 15 more equal 40 at once, as unweighted warm starts do.
    let grown = IsolationForestParams::new()
        .n_estimators(25)
        .max_samples(MaxSamples::Count(128))
        .seed(9)
        .n_threads(Some(1))
        .fit_weighted(x.view(), &w)
        .unwrap()
        .grow_weighted(x.view(), 15, &w)
        .unwrap();
    let c = grown.score(x.view()).unwrap();
    assert!(a.iter().zip(&c).all(|(a, c)| a.to_bits() == c.to_bits()));
}

#[test]
fn bad_weights_are_typed_errors() {
    let x = two_clusters();
    let params = IsolationForestParams::new().n_estimators(5);
    let refused = |w: &[f64]| match params.fit_weighted(x.view(), w) {
        Err(anomaly_core::Error::InvalidParameter { name, reason }) => {
            assert_eq!(name, "sample_weight");
            reason
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(refused(&[1.0; 439]).contains("439 weights for 440 rows"));
    assert!(refused(&[0.0; 440]).contains("non-zero"));
    let mut w = vec![1.0; 440];
    w[7] = f64::NAN;
    assert!(refused(&w).contains("row 7"));
    w[7] = -1.0;
    assert!(refused(&w).contains("negative"));
    // 256 rows per tree without replacement need 256 rows of positive weight, as numpy's choice does.
    let mut w = vec![0.0; 440];
    w[..255].fill(1.0);
    assert!(refused(&w).contains("255 rows have a non-zero weight"));
    assert!(
        params
            .clone()
            .bootstrap(true)
            .fit_weighted(x.view(), &w)
            .is_ok()
    );
}

/// A dense matrix with mostly zeros (and some -0.0), and its CSR arrays.
fn sparse_twin() -> impl Strategy<Value = (Array2<f64>, Vec<usize>, Vec<usize>, Vec<f64>)> {
    (3usize..80, 1usize..12).prop_flat_map(|(n, d)| {
        prop::collection::vec(
            prop_oneof![
                6 => Just(0.0),
                1 => Just(-0.0),
                3 => -1e3f64..1e3,
            ],
            n * d,
        )
        .prop_map(move |v| {
            let x = Array2::from_shape_vec((n, d), v).unwrap();
            let (mut indptr, mut indices, mut data) = (vec![0], Vec::new(), Vec::new());
            for row in x.outer_iter() {
                for (c, &v) in row.iter().enumerate() {
                    // Zeros are left out, but -0.0 is stored as scipy stores an explicit value.
                    if v != 0.0 || v.is_sign_negative() {
                        indices.push(c);
                        data.push(v);
                    }
                }
                indptr.push(indices.len());
            }
            (x, indptr, indices, data)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_sparse_matrix_fits_and_scores_as_its_dense_twin(
        (x, indptr, indices, data) in sparse_twin(),
        seed in 0u64..1000,
        bootstrap in any::<bool>(),
        half_the_features in any::<bool>(),
        weighted in any::<bool>(),
    ) {
        let csr = anomaly_core::CsrMatrix::new(x.dim(), &indptr, &indices, &data).unwrap();
        let mut params = IsolationForestParams::new()
            .n_estimators(20)
            .seed(seed)
            .bootstrap(bootstrap)
            .contamination(Contamination::Fraction(0.1));
        if half_the_features {
            params = params.max_features(MaxFeatures::Fraction(0.5));
        }
        let weights: Vec<f64> = (0..x.nrows()).map(|i| 1.0 + (i % 3) as f64).collect();
        let w = weighted.then_some(weights.as_slice());
        let dense = match w {
            Some(w) => params.fit_weighted(x.view(), w).unwrap(),
            None => params.fit(x.view()).unwrap(),
        };
        let sparse = params.fit_sparse(&csr, w).unwrap();
        // The same bytes, so the same bits (`==` on floats would take -0.0 for 0.0).
        prop_assert_eq!(dense.to_snapshot_bytes(), sparse.to_snapshot_bytes());
        let a = dense.score(x.view()).unwrap();
        let b = sparse.score_sparse(&csr).unwrap();
        prop_assert!(a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()));
        let grown_dense = dense.grow(x.view(), 5).unwrap();
        let grown_sparse = sparse.grow_sparse(&csr, 5, None).unwrap();
        prop_assert_eq!(grown_dense.to_snapshot_bytes(), grown_sparse.to_snapshot_bytes());
    }
}

/// Many blocks and the wider kernels (47 columns: the 128-row column kernel; 120: the 32-row one; 300: the per-tree
/// walk), a strided dense view scored on the same thread in between.
#[test]
fn wide_and_long_sparse_matrices_score_as_their_dense_twins() {
    for d in [47, 120, 300] {
        let n = 1_000;
        let x = Array2::from_shape_fn((n, d), |(i, j)| {
            if (i * 31 + j * 17) % 23 == 0 {
                ((i * j) % 7) as f64 - 3.0
            } else {
                0.0
            }
        });
        let (mut indptr, mut indices, mut data) = (vec![0], Vec::new(), Vec::new());
        for row in x.outer_iter() {
            for (c, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    indices.push(c);
                    data.push(v);
                }
            }
            indptr.push(indices.len());
        }
        let csr = anomaly_core::CsrMatrix::new((n, d), &indptr, &indices, &data).unwrap();
        let params = IsolationForestParams::new().n_estimators(30).seed(d as u64);
        let dense = params.fit(x.view()).unwrap();
        let sparse = params.fit_sparse(&csr, None).unwrap();
        assert_eq!(
            dense.to_snapshot_bytes(),
            sparse.to_snapshot_bytes(),
            "width {d}"
        );
        let a = dense.score(x.view()).unwrap();
        let b = sparse.score_sparse(&csr).unwrap();
        let reversed = x.slice(ndarray::s![..;-1, ..]);
        let c = dense.score(reversed).unwrap();
        let b2 = sparse.score_sparse_on_threads(&csr, Some(2)).unwrap();
        for r in 0..n {
            assert_eq!(a[r].to_bits(), b[r].to_bits(), "width {d}, row {r}");
            assert_eq!(
                a[r].to_bits(),
                b2[r].to_bits(),
                "width {d}, row {r}, 2 threads"
            );
            assert_eq!(
                a[r].to_bits(),
                c[n - 1 - r].to_bits(),
                "width {d}, row {r}, strided"
            );
        }
    }
}

#[test]
fn sparse_input_is_checked() {
    let x = Array2::<f64>::zeros((4, 3));
    let model = IsolationForestParams::new()
        .n_estimators(5)
        .fit(x.view())
        .unwrap();
    let narrow = anomaly_core::CsrMatrix::new((2, 2), &[0, 1, 1], &[1], &[3.0]).unwrap();
    assert!(matches!(
        model.score_sparse(&narrow),
        Err(anomaly_core::Error::DimensionMismatch {
            expected: 3,
            got: 2
        })
    ));
    let empty = anomaly_core::CsrMatrix::new((0, 3), &[0], &[], &[]).unwrap();
    assert!(matches!(
        IsolationForestParams::new().fit_sparse(&empty, None),
        Err(anomaly_core::Error::EmptyInput { .. })
    ));
    assert!(matches!(
        model.score_on_threads(x.view(), Some(0)),
        Err(anomaly_core::Error::InvalidParameter {
            name: "n_threads",
            ..
        })
    ));
}
