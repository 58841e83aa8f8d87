//! Detectors that learn one observation at a time.
//!
//! Every detector implements [`StreamingDetector`]: [`score`](StreamingDetector::score) judges an observation
//! against what was learnt so far, [`update`](StreamingDetector::update) learns it, and
//! [`score_and_update`](StreamingDetector::score_and_update) does both in that order (score, then learn).
//! During warm-up the score is `None`, never a sentinel value. An observation is a slice: one value for a
//! univariate stream, several for a vector stream; the width is fixed by the first observation.

mod ema;
mod moving_average;
mod rolling;
mod series;
mod step_forest;
mod streaming_forest;

pub use ema::{Ema, EmaParams};
pub use moving_average::{MovingAverage, MovingAverageParams};
pub use series::{
    SeriesDetection, SeriesDetectors, SeriesMethod, SeriesOutcome, SeriesParams, SeriesStats,
};
pub use streaming_forest::{StreamingIsolationForest, StreamingIsolationForestParams};

use ndarray::ArrayView2;

use crate::error::{Error, Result};
use crate::explanation::{Explanation, Verdict, fmt_num};
use crate::validate;

/// A detector that scores and learns one observation at a time.
///
/// Required: [`dims`](Self::dims), [`score`](Self::score), [`update`](Self::update),
/// [`explain`](Self::explain). The rest is provided and may be overridden for speed.
///
/// ```
/// use anomaly_core::{MovingAverageParams, StreamingDetector};
///
/// let mut detector = MovingAverageParams::new().window(3).threshold(5.0).build()?;
/// let verdicts = detector.score_many_values(&[10.0, 11.0, 10.0, 10.5, 30.0])?;
/// assert!(verdicts[0].is_none()); // warming up
/// assert!(!verdicts[3].unwrap().is_anomaly);
/// assert!(verdicts[4].unwrap().is_anomaly);
/// # Ok::<(), anomaly_core::Error>(())
/// ```
pub trait StreamingDetector {
    /// The observation width, once the first observation fixed it.
    fn dims(&self) -> Option<usize>;

    /// Judges `x` against the current state without learning it; `None` during warm-up.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] or [`Error::NonFinite`].
    fn score(&self, x: &[f64]) -> Result<Option<Verdict>>;

    /// Learns `x`.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] or [`Error::NonFinite`]; the state is unchanged on error.
    fn update(&mut self, x: &[f64]) -> Result<()>;

    /// Explains the verdict [`score`](Self::score) would give; `None` during warm-up.
    ///
    /// # Errors
    /// As [`score`](Self::score).
    fn explain(&self, x: &[f64]) -> Result<Option<Explanation>>;

    /// Scores `x`, then learns it.
    ///
    /// # Errors
    /// As [`score`](Self::score).
    fn score_and_update(&mut self, x: &[f64]) -> Result<Option<Verdict>> {
        let verdict = self.score(x)?;
        self.update(x)?;
        Ok(verdict)
    }

    /// Runs [`score_and_update`](Self::score_and_update) over every row of `series`, in order.
    ///
    /// The whole series is checked first, so on error nothing has been learnt.
    ///
    /// # Errors
    /// [`Error::NonFinite`] with the row and column, or [`Error::DimensionMismatch`].
    fn score_many(&mut self, series: ArrayView2<'_, f64>) -> Result<Vec<Option<Verdict>>> {
        check_series(self.dims(), series)?;
        let mut out = Vec::with_capacity(series.nrows());
        let mut row_buf = Vec::with_capacity(series.ncols());
        for row in series.outer_iter() {
            row_buf.clear();
            row_buf.extend(row.iter().copied());
            out.push(self.score_and_update(&row_buf)?);
        }
        Ok(out)
    }

    /// [`score_many`](Self::score_many) for a univariate series.
    ///
    /// # Errors
    /// As [`score_many`](Self::score_many).
    fn score_many_values(&mut self, series: &[f64]) -> Result<Vec<Option<Verdict>>> {
        let view = ArrayView2::from_shape((series.len(), 1), series)
            .map_err(|_| Error::EmptyInput { what: "series" })?;
        self.score_many(view)
    }

    /// [`score_and_update`](Self::score_and_update) for a univariate stream.
    ///
    /// # Errors
    /// As [`score_and_update`](Self::score_and_update).
    fn score_and_update_value(&mut self, x: f64) -> Result<Option<Verdict>> {
        self.score_and_update(&[x])
    }
}

impl<T: StreamingDetector + ?Sized> StreamingDetector for Box<T> {
    fn dims(&self) -> Option<usize> {
        (**self).dims()
    }
    fn score(&self, x: &[f64]) -> Result<Option<Verdict>> {
        (**self).score(x)
    }
    fn update(&mut self, x: &[f64]) -> Result<()> {
        (**self).update(x)
    }
    fn explain(&self, x: &[f64]) -> Result<Option<Explanation>> {
        (**self).explain(x)
    }
    fn score_and_update(&mut self, x: &[f64]) -> Result<Option<Verdict>> {
        (**self).score_and_update(x)
    }
    fn score_many(&mut self, series: ArrayView2<'_, f64>) -> Result<Vec<Option<Verdict>>> {
        (**self).score_many(series)
    }
}

impl<T: StreamingDetector + ?Sized> StreamingDetector for &mut T {
    fn dims(&self) -> Option<usize> {
        (**self).dims()
    }
    fn score(&self, x: &[f64]) -> Result<Option<Verdict>> {
        (**self).score(x)
    }
    fn update(&mut self, x: &[f64]) -> Result<()> {
        (**self).update(x)
    }
    fn explain(&self, x: &[f64]) -> Result<Option<Explanation>> {
        (**self).explain(x)
    }
    fn score_and_update(&mut self, x: &[f64]) -> Result<Option<Verdict>> {
        (**self).score_and_update(x)
    }
    fn score_many(&mut self, series: ArrayView2<'_, f64>) -> Result<Vec<Option<Verdict>>> {
        (**self).score_many(series)
    }
}

/// Checks one observation against the fixed width (or any non-zero width before the first).
pub(crate) fn check_observation(dims: Option<usize>, x: &[f64]) -> Result<()> {
    if x.is_empty() {
        return Err(Error::EmptyInput {
            what: "observation",
        });
    }
    validate::row(x, dims.unwrap_or(x.len()), 0)
}

/// Checks a whole series before a detector learns any of it.
pub(crate) fn check_series(dims: Option<usize>, series: ArrayView2<'_, f64>) -> Result<()> {
    if series.nrows() == 0 {
        return Ok(());
    }
    match dims {
        Some(d) => validate::matrix_with_width(series, d),
        None => validate::matrix(series),
    }
}

/// The subject of a rationale: "value 12" for a univariate stream, "`x2` = 12" for dimension `lead` of a vector.
pub(crate) fn subject(x: &[f64], lead: usize) -> String {
    if x.len() == 1 {
        format!("value {}", fmt_num(x[0]))
    } else {
        format!("`x{lead}` = {}", fmt_num(x[lead]))
    }
}

/// `deviation / std`, finite even when the standard deviation is zero.
pub(crate) fn z_score(deviation: f64, std: f64, mean: f64) -> f64 {
    if deviation == 0.0 {
        0.0
    } else {
        let floor = f64::EPSILON * mean.abs().max(1.0);
        (deviation / std.max(floor)).min(f64::MAX)
    }
}
