//! The ADBench "cardio" sample bundled with the examples (`examples/data/cardio/`), embedded in the binary so
//! `detect` runs without arguments from any directory.
//!
//! 1831 cardiotocograms × 21 standardised features, 176 (9.6 %) labelled anomalous. BSD-2-Clause (ADBench); see
//! `examples/data/cardio/README.md` for provenance and citations.

use crate::error::DetectError;
use crate::input::{Dataset, parse_csv, parse_labels};

/// Name under which the bundled table appears in messages.
pub const CARDIO_FILE: &str = "cardio.csv (bundled)";

/// Name under which the bundled labels appear in messages.
pub const CARDIO_LABELS_FILE: &str = "labels.txt (bundled)";

/// The bundled table: a header row (the UCI Cardiotocography feature names) and 1831 rows.
pub const CARDIO_CSV: &str = include_str!("../data/cardio/cardio.csv");

/// The bundled labels, one per row: 1 = anomaly.
pub const CARDIO_LABELS: &str = include_str!("../data/cardio/labels.txt");

/// The bundled table, parsed.
///
/// # Errors
/// None in practice: the embedded file is checked by the tests.
pub fn cardio() -> Result<Dataset, DetectError> {
    parse_csv(CARDIO_FILE, CARDIO_CSV.as_bytes())
}

/// The bundled labels for [`cardio`]'s rows.
///
/// # Errors
/// None in practice: the embedded file is checked by the tests.
pub fn cardio_labels(data: &Dataset) -> Result<Vec<bool>, DetectError> {
    parse_labels(CARDIO_LABELS_FILE, CARDIO_LABELS.as_bytes(), data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_sample_is_intact() {
        let data = cardio().unwrap();
        assert_eq!((data.n_samples(), data.n_features()), (1831, 21));
        assert_eq!(data.names[0], "LB");
        assert_eq!(data.names[20], "Tendency");
        assert!(data.x.iter().all(|v| v.is_finite()));
        let labels = cardio_labels(&data).unwrap();
        assert_eq!(labels.iter().filter(|&&l| l).count(), 176);
    }
}
