//! Benchmarks of `anomaly-core` (see `benches/forest.rs` and `benches/streaming.rs`) and the data they run on.
//!
//! Run them with `cargo bench -p anomaly-benches`; `cargo test --benches -p anomaly-benches` runs every benchmark
//! once on small inputs as a smoke test. `compare_sklearn.py` beside this crate times scikit-learn and the `detect`
//! binary on the same data.

use ndarray::Array2;
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Factor the planted anomalies are scaled by.
pub const OUTLIER_SCALE: f64 = 3.0;

/// Share of rows that are planted anomalies.
pub const OUTLIER_FRACTION: f64 = 0.01;

/// Whether the benchmark binary measures (`cargo bench`, which passes `--bench`) rather than runs each benchmark
/// once as a test (`cargo test --benches`, or `cargo bench -- --test`), where the inputs should stay small.
///
/// This mirrors how criterion 0.8 picks its mode: test mode unless `--bench` is given without `--test`.
pub fn full_run() -> bool {
    let mut bench = false;
    let mut test = false;
    for arg in std::env::args() {
        bench |= arg == "--bench";
        test |= arg == "--test";
    }
    bench && !test
}

/// Standard normal draws by the Box–Muller transform, two per pair of uniforms.
#[derive(Debug)]
pub struct Normal<R> {
    rng: R,
    spare: Option<f64>,
}

impl<R: Rng> Normal<R> {
    /// Draws from `rng`.
    pub fn new(rng: R) -> Self {
        Normal { rng, spare: None }
    }

    /// One N(0, 1) draw.
    pub fn sample(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // u1 in (0, 1] so that ln(u1) is finite.
        let u1 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }

    /// The underlying generator.
    pub fn rng(&mut self) -> &mut R {
        &mut self.rng
    }
}

/// `rows × cols` matrix of N(0, I) rows, `OUTLIER_FRACTION` of them (chosen at random) scaled by `OUTLIER_SCALE`.
///
/// Returns the matrix and the planted labels (`true` for a scaled row). Deterministic for a given seed.
pub fn gaussian_with_outliers(rows: usize, cols: usize, seed: u64) -> (Array2<f64>, Vec<bool>) {
    let mut normal = Normal::new(ChaCha8Rng::seed_from_u64(seed));
    let mut x = Array2::from_shape_simple_fn((rows, cols), || normal.sample());
    let n_outliers = ((rows as f64) * OUTLIER_FRACTION).round() as usize;
    let mut labels = vec![false; rows];
    for r in index::sample(normal.rng(), rows, n_outliers.min(rows)) {
        labels[r] = true;
        x.row_mut(r).mapv_inplace(|v| v * OUTLIER_SCALE);
    }
    (x, labels)
}

/// A univariate series: a sine of period 1000 points and amplitude 10, plus N(0, 1) noise.
pub fn sine_series(len: usize, seed: u64) -> Vec<f64> {
    let mut normal = Normal::new(ChaCha8Rng::seed_from_u64(seed));
    (0..len)
        .map(|i| 10.0 * (std::f64::consts::TAU * i as f64 / 1000.0).sin() + normal.sample())
        .collect()
}

/// The shared data folder beside the checkout (`../shared/data`), or `ANOMALY_SHARED_DATA`.
pub fn shared_data() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("ANOMALY_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
        });
    dir.is_dir().then_some(dir)
}

fn loghub_file(dir: &std::path::Path, set: &str, suffix: &str) -> std::path::PathBuf {
    if set == "BGL" {
        dir.join(format!("logs/bgl_2k/BGL_2k.log{suffix}"))
    } else {
        dir.join(format!("logs/loghub_2k/{set}/{set}_2k.log{suffix}"))
    }
}

/// A loghub 2k set's raw lines (BGL's without their label token).
///
/// # Panics
/// When the file cannot be read.
pub fn loghub_raw_lines(dir: &std::path::Path, set: &str) -> Vec<String> {
    let text = std::fs::read_to_string(loghub_file(dir, set, "")).expect("log file");
    text.lines()
        .map(|l| {
            if set == "BGL" {
                l.split_once(' ').map_or(l, |x| x.1)
            } else {
                l
            }
            .to_string()
        })
        .collect()
}

/// A loghub 2k set's `Content` column (the message after loghub's header parsing), what Drain3 is measured on.
///
/// # Panics
/// When the file cannot be read or has no `Content` column.
pub fn loghub_contents(dir: &std::path::Path, set: &str) -> Vec<String> {
    let mut reader =
        csv::Reader::from_path(loghub_file(dir, set, "_structured.csv")).expect("structured csv");
    let column = reader
        .headers()
        .expect("header")
        .iter()
        .position(|h| h == "Content")
        .expect("Content column");
    reader
        .records()
        .map(|r| r.expect("csv row")[column].to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_draws_have_unit_moments() {
        let mut normal = Normal::new(ChaCha8Rng::seed_from_u64(1));
        let draws: Vec<f64> = (0..200_000).map(|_| normal.sample()).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
    }

    #[test]
    fn plants_one_percent_and_is_deterministic() {
        let (x, labels) = gaussian_with_outliers(10_000, 3, 7);
        assert_eq!(labels.iter().filter(|&&l| l).count(), 100);
        let (y, _) = gaussian_with_outliers(10_000, 3, 7);
        assert_eq!(x, y);
        assert!(x.iter().all(|v| v.is_finite()));
    }
}
