//! Accuracy on real, labelled data against scikit-learn's reference figures.
//!
//! Protocol (the unsupervised ADBench protocol, `shared/data/SOURCES.md`): fit on all rows without labels, score the
//! same rows, ROC-AUC against `y`; 100 trees, 256 samples per tree. The mean must be no more than 0.01 below
//! scikit-learn 1.9.1's mean over seeds 0–4 in `shared/data/REFERENCE.md`.
//!
//! Our mean is taken over seeds 0–99 (`ANOMALY_ACCURACY_SEEDS` changes the count), and the seeds 0–4 figure is
//! printed beside it. Five seeds are too few to compare two random algorithms to 0.01: on cardio the ROC-AUC's
//! standard deviation over seeds is 0.011 for both libraries, and scikit-learn's own seeds 0–4 (0.932) sit 0.007
//! above its 100-seed mean (0.925, measured with scikit-learn 1.9.1 beside ours, 0.926), so an identical algorithm
//! would fail a five-seed comparison about one run in ten.

use std::fs::File;
use std::path::PathBuf;

use anomaly_core::IsolationForestParams;
use anomaly_core::metrics::roc_auc;
use ndarray::{Array1, Array2};
use ndarray_npy::NpzReader;

/// The shared data folder beside the checkout, or `ANOMALY_SHARED_DATA`.
fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("ANOMALY_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    dir.is_dir().then_some(dir)
}

fn load(path: &PathBuf) -> (Array2<f64>, Vec<bool>) {
    let mut npz = NpzReader::new(File::open(path).unwrap()).unwrap();
    // Features are float64 in most sets, small integers in some (satellite stores uint8).
    // Features are float64 in most sets, small integers in some (satellite: uint8, shuttle: int16).
    type M<T> = Result<Array2<T>, ndarray_npy::ReadNpzError>;
    let x: Array2<f64> = if let Ok(x) = npz.by_name("X") as M<f64> {
        x
    } else if let Ok(x) = npz.by_name("X") as M<u8> {
        x.mapv(f64::from)
    } else if let Ok(x) = npz.by_name("X") as M<i16> {
        x.mapv(f64::from)
    } else {
        (npz.by_name("X") as M<i64>).unwrap().mapv(|v| v as f64)
    };
    let y: Vec<bool> = if let Ok(y) = npz.by_name::<ndarray::OwnedRepr<f64>, ndarray::Ix1>("y") {
        y.iter().map(|&v| v == 1.0).collect()
    } else if let Ok(y) = npz.by_name::<ndarray::OwnedRepr<i64>, ndarray::Ix1>("y") {
        y.iter().map(|&v| v == 1).collect()
    } else {
        let y: Array1<i32> = npz.by_name("y").unwrap();
        y.iter().map(|&v| v == 1).collect()
    };
    (x, y)
}

/// (file under the data folder, scikit-learn's mean ROC-AUC over seeds 0–4).
const SETS: &[(&str, f64)] = &[
    ("tabular/6_cardio.npz", 0.932),
    ("tabular/23_mammography.npz", 0.859),
    ("tabular/30_satellite.npz", 0.696),
    ("tabular/32_shuttle.npz", 0.997),
    ("logs/bgl_2k_lines.npz", 0.869),
];

#[test]
fn roc_auc_matches_scikit_learn_on_public_sets() {
    let Some(dir) = shared_data() else {
        eprintln!(
            "SKIPPED roc_auc_matches_scikit_learn_on_public_sets: no shared data folder (set ANOMALY_SHARED_DATA)"
        );
        return;
    };
    let mut failures = Vec::new();
    for &(file, reference) in SETS {
        let path = dir.join(file);
        if !path.is_file() {
            eprintln!("SKIPPED {file}: not found");
            continue;
        }
        let (x, y) = load(&path);
        let seeds: u64 = std::env::var("ANOMALY_ACCURACY_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        let aucs: Vec<f64> = (0..seeds)
            .map(|seed| {
                let model = IsolationForestParams::new()
                    .seed(seed)
                    .fit(x.view())
                    .unwrap();
                let scores = model.score(x.view()).unwrap();
                roc_auc(scores.as_slice().unwrap(), &y).unwrap()
            })
            .collect();
        let mean = aucs.iter().sum::<f64>() / aucs.len() as f64;
        let first5 = aucs.iter().take(5).sum::<f64>() / aucs.len().min(5) as f64;
        eprintln!(
            "{file}: ROC-AUC {mean:.4} over {} seeds, {first5:.4} over seeds 0-4 (scikit-learn {reference:.3} over seeds 0-4)",
            aucs.len()
        );
        if mean < reference - 0.01 {
            failures.push(format!("{file}: {mean:.4} < {reference} - 0.01"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
