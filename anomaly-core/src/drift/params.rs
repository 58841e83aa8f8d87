//! The parameters of a [`DriftDetector`](super::DriftDetector).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Most bins per feature (bin indices are stored as `u16`).
pub(crate) const MAX_BINS: usize = 1024;

/// Parameters of a [`DriftDetector`](super::DriftDetector).
///
/// | parameter | default | meaning |
/// | --- | --- | --- |
/// | `window` | 500 | recent observations compared with the reference (at least `bins`) |
/// | `check_every` | 100 | observations between two checks once the window is full (at least 1) |
/// | `bins` | 10 | quantile bins per feature and for the scores, in `2..=1024` |
/// | `psi_threshold` | 0.2 | a feature (or the score) drifted when its PSI exceeds this (finite, positive) |
/// | `min_fields` | 1 | drifted features needed to report drift (a drifted score alone also does) |
///
/// ```
/// use anomaly_core::drift::DriftParams;
///
/// let params = DriftParams::new().window(1_000).check_every(250);
/// assert_eq!(params.get_window(), 1_000);
/// assert!(DriftParams::new().bins(1).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftParams {
    window: usize,
    check_every: usize,
    bins: usize,
    psi_threshold: f64,
    min_fields: usize,
}

impl Default for DriftParams {
    fn default() -> Self {
        Self::new()
    }
}

impl DriftParams {
    /// Defaults: window 500, a check every 100 observations, 10 bins, PSI threshold 0.2, one drifted feature.
    pub fn new() -> Self {
        DriftParams {
            window: 500,
            check_every: 100,
            bins: 10,
            psi_threshold: 0.2,
            min_fields: 1,
        }
    }

    /// Recent observations compared with the reference (default 500).
    pub fn window(mut self, n: usize) -> Self {
        self.window = n;
        self
    }

    /// Observations between two checks once the window is full (default 100).
    pub fn check_every(mut self, n: usize) -> Self {
        self.check_every = n;
        self
    }

    /// Quantile bins per feature (default 10).
    pub fn bins(mut self, n: usize) -> Self {
        self.bins = n;
        self
    }

    /// PSI above which a feature or the score has drifted (default 0.2).
    pub fn psi_threshold(mut self, psi: f64) -> Self {
        self.psi_threshold = psi;
        self
    }

    /// Drifted features needed to report drift (default 1).
    pub fn min_fields(mut self, n: usize) -> Self {
        self.min_fields = n;
        self
    }

    /// The window size.
    pub fn get_window(&self) -> usize {
        self.window
    }

    /// Observations between checks.
    pub fn get_check_every(&self) -> usize {
        self.check_every
    }

    /// Bins per feature.
    pub fn get_bins(&self) -> usize {
        self.bins
    }

    /// The PSI threshold.
    pub fn get_psi_threshold(&self) -> f64 {
        self.psi_threshold
    }

    /// Drifted features needed to report drift.
    pub fn get_min_fields(&self) -> usize {
        self.min_fields
    }

    /// Checks the parameters against the table above.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first parameter outside its domain.
    pub fn validate(&self) -> Result<()> {
        if !(2..=MAX_BINS).contains(&self.bins) {
            return Err(Error::invalid("bins", format!("must be in 2..={MAX_BINS}")));
        }
        if self.window < self.bins {
            return Err(Error::invalid(
                "window",
                format!("must be at least `bins` ({})", self.bins),
            ));
        }
        if self.check_every == 0 {
            return Err(Error::invalid("check_every", "must be at least 1"));
        }
        if !(self.psi_threshold.is_finite() && self.psi_threshold > 0.0) {
            return Err(Error::invalid(
                "psi_threshold",
                "must be finite and positive",
            ));
        }
        if self.min_fields == 0 {
            return Err(Error::invalid("min_fields", "must be at least 1"));
        }
        Ok(())
    }
}
