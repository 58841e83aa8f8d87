//! Small sampling helpers on uniform draws, so the generators need no distribution crate.

use rand::Rng;

/// A uniform draw in `[0, 1)`.
pub(crate) fn uniform(rng: &mut impl Rng) -> f64 {
    rng.random::<f64>()
}

/// A standard normal draw (Box–Muller, one of the pair); always consumes two uniforms.
pub(crate) fn normal(rng: &mut impl Rng) -> f64 {
    let u1 = uniform(rng);
    let u2 = uniform(rng);
    // 1 − u1 is in (0, 1], so the logarithm is finite.
    (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// An exponential draw with the given rate (events per unit), from one uniform.
pub(crate) fn exponential(u: f64, rate: f64) -> f64 {
    -(1.0 - u).ln() / rate
}

/// The index picked by `u` in `[0, 1)` from non-negative `weights` (not necessarily normalised).
pub(crate) fn pick(u: f64, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut target = u * total;
    for (i, &w) in weights.iter().enumerate() {
        if target < w {
            return i;
        }
        target -= w;
    }
    weights.len().saturating_sub(1)
}

/// Zipf-like weights `1, 1/2, 1/3, …` for `n` items: a few popular ones and a long tail.
pub(crate) fn zipf(n: usize) -> Vec<f64> {
    (1..=n).map(|k| 1.0 / k as f64).collect()
}

/// Rounds to `decimals` decimal places.
pub(crate) fn round_to(v: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (v * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn normal_has_unit_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn pick_follows_weights() {
        assert_eq!(pick(0.0, &[1.0, 1.0]), 0);
        assert_eq!(pick(0.49, &[1.0, 1.0]), 0);
        assert_eq!(pick(0.5, &[1.0, 1.0]), 1);
        assert_eq!(pick(0.999_999, &[1.0, 0.0, 1.0]), 2);
        assert_eq!(pick(0.5, &[0.0, 1.0, 0.0]), 1);
    }
}
