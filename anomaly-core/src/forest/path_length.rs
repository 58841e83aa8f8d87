//! The normalising constant of isolation forests.

/// Euler–Mascheroni constant, as numpy's `np.euler_gamma`.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Average path length of an unsuccessful search in a binary search tree of `n` points, c(n).
///
/// Liu, Ting & Zhou (2008), eq. 1, with scikit-learn's conventions: c(n) = 0 for n ≤ 1, 1 for n = 2, and
/// 2(ln(n − 1) + γ) − 2(n − 1)/n otherwise. It is added at leaves that were not split further, and normalises the
/// mean path length into a score.
pub fn average_path_length(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n <= 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn_values() {
        // Values of sklearn.ensemble._iforest._average_path_length.
        assert_eq!(average_path_length(0.0), 0.0);
        assert_eq!(average_path_length(1.0), 0.0);
        assert_eq!(average_path_length(2.0), 1.0);
        assert!((average_path_length(3.0) - 1.207_392_357_589_464).abs() < 1e-12);
        assert!((average_path_length(256.0) - 10.244_770_920_116_851).abs() < 1e-9);
    }
}
