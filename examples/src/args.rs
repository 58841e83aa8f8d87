//! Parsers of `detect`'s command-line values that `clap` cannot express alone.

use anomaly_core::records::role::FieldRole;
use anomaly_core::{Contamination, MaxSamples};

use crate::output::OutputFormat;

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

/// Parses `--column NAME=ROLE`; the name may itself hold `=` (the last one separates).
///
/// # Errors
/// A message naming the roles.
pub fn parse_column_role(s: &str) -> Result<(String, FieldRole), String> {
    let (name, role) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected NAME=ROLE, got {s:?}"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("expected NAME=ROLE, got {s:?}"));
    }
    let role = role.parse::<FieldRole>().map_err(|e| match e {
        anomaly_core::Error::InvalidParameter { reason, .. } => reason,
        other => other.to_string(),
    })?;
    Ok((name.to_string(), role))
}

/// Parses `--delimiter`: one ASCII character, or `tab` / `\t`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    anomaly_core::table::parse_delimiter(s).map_err(|e| match e {
        anomaly_core::Error::InvalidParameter { reason, .. } => reason,
        other => other.to_string(),
    })
}

/// Parses `--output-format`: `csv`, or `jsonl` (also `json`, `ndjson`) for JSON lines.
///
/// # Errors
/// A message naming the formats.
pub fn parse_output_format(s: &str) -> Result<OutputFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "csv" => Ok(OutputFormat::Csv),
        "jsonl" | "json" | "ndjson" => Ok(OutputFormat::JsonLines),
        _ => Err(format!("expected csv or jsonl, got {s:?}")),
    }
}

/// Parses `--train-rows`: a whole number of rows, at least 2.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_train_rows(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 2 => Ok(n),
        _ => Err(format!(
            "expected a whole number of rows, at least 2, got {s:?}"
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
    fn table_flags() {
        assert_eq!(
            parse_column_role("a=b=identifier"),
            Ok(("a=b".into(), FieldRole::Identifier))
        );
        assert_eq!(
            parse_column_role(" when = TIMESTAMP"),
            Ok(("when".into(), FieldRole::Timestamp))
        );
        for bad in ["x", "=category", "x=colour"] {
            assert!(parse_column_role(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        for bad in ["", ";;", "\"", "é"] {
            assert!(parse_delimiter(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_output_format("JSON"), Ok(OutputFormat::JsonLines));
        assert!(parse_output_format("xml").is_err());
        assert_eq!(parse_train_rows("100"), Ok(100));
        assert!(parse_train_rows("1").is_err());
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
