//! Integration tests of anomaly-core: one binary, one module per concern.

// Tests report measured figures and skips on stderr.
#![allow(clippy::print_stderr)]

mod accuracy;
mod engine;
mod errors;
mod forest_properties;
mod limits;
mod logs;
mod records;
mod records_e2e;
mod streaming;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Standard normal draws (Box–Muller), seeded.
pub(crate) fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect()
}

/// `n × d` standard normal matrix.
pub(crate) fn gaussian(n: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_vec((n, d), normals(&mut rng, n * d)).unwrap()
}
