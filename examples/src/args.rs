//! Parsers of `detect`'s command-line values that `clap` cannot express alone.

use anomaly_core::{Contamination, MaxSamples};

/// Parses `--contamination`: `auto` (threshold 0.5, as the isolation-forest paper) or a fraction in `(0, 0.5]`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_contamination(s: &str) -> Result<Contamination, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Contamination::Auto);
    }
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 0.5 => Ok(Contamination::Fraction(f)),
        _ => Err(format!(
            "expected `auto` or a fraction in (0, 0.5], got {s:?}"
        )),
    }
}

/// Parses `--sample-size`: `auto` (`min(256, rows)`) or a number of rows per tree, at least 2.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_sample_size(s: &str) -> Result<MaxSamples, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("auto") {
        return Ok(MaxSamples::Auto);
    }
    match s.parse::<usize>() {
        Ok(n) if n >= 2 => Ok(MaxSamples::Count(n)),
        _ => Err(format!(
            "expected `auto` or a whole number of rows per tree, at least 2, got {s:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contamination() {
        assert_eq!(parse_contamination("auto"), Ok(Contamination::Auto));
        assert_eq!(parse_contamination("0.1"), Ok(Contamination::Fraction(0.1)));
        assert_eq!(parse_contamination("0.5"), Ok(Contamination::Fraction(0.5)));
        for bad in ["0", "0.51", "-0.1", "NaN", "inf", "x", ""] {
            assert!(parse_contamination(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sample_size() {
        assert_eq!(parse_sample_size("auto"), Ok(MaxSamples::Auto));
        assert_eq!(parse_sample_size("64"), Ok(MaxSamples::Count(64)));
        for bad in ["0", "1", "-3", "0.5", "x"] {
            assert!(parse_sample_size(bad).is_err(), "{bad}");
        }
    }
}
