//! Unfitted isolation-forest parameters, with scikit-learn's names and defaults.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::model::IsolationForest;
use super::sparse::CsrMatrix;
use crate::error::{Error, Result};

/// How many rows each tree is grown on (scikit-learn's `max_samples`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxSamples {
    /// `min(256, n_samples)`.
    Auto,
    /// This many rows (at most `n_samples`; more is reduced to `n_samples` with a warning, as scikit-learn does).
    Count(usize),
    /// This fraction of the rows, in `(0, 1]`: `floor(fraction * n_samples)`.
    Fraction(f64),
}

/// The expected share of anomalies, which sets the decision threshold (scikit-learn's `contamination`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Contamination {
    /// The threshold of the original paper: score 0.5 (scikit-learn's `offset_ = -0.5`).
    Auto,
    /// A fraction in `(0, 0.5]`: the threshold is the matching quantile of the training scores.
    Fraction(f64),
}

/// How many features each tree draws from (scikit-learn's `max_features`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxFeatures {
    /// Every feature (the default).
    All,
    /// This many features (at most `n_features`).
    Count(usize),
    /// This fraction of the features, in `(0, 1]`: `max(1, floor(fraction * n_features))`.
    Fraction(f64),
}

/// Most trees a forest may have ([`IsolationForestParams::n_estimators`], and after
/// [`IsolationForest::grow`](crate::IsolationForest::grow)): the trees are allocated up front, so a larger count is
/// refused with [`Error::InvalidParameter`] rather than attempted.
pub const MAX_ESTIMATORS: usize = 100_000;

/// Most threads of a forest's own pool ([`IsolationForestParams::n_threads`]): a pool allocates per thread when it is
/// built, so a larger count is refused with [`Error::InvalidParameter`].
pub const MAX_THREADS: usize = 1024;

/// Parameters of an isolation forest; [`fit`](Self::fit) turns them into an [`IsolationForest`].
///
/// The definitions are scikit-learn 1.9's `IsolationForest` (Liu, Ting & Zhou, "Isolation Forest", ICDM 2008):
///
/// | parameter | default | meaning |
/// | --- | --- | --- |
/// | `n_estimators` | 100 | number of trees (at most [`MAX_ESTIMATORS`]) |
/// | `max_samples` | `Auto` | rows per tree: `min(256, n)`, a count or a fraction |
/// | `contamination` | `Auto` | threshold: score 0.5, or the quantile of training scores |
/// | `max_features` | `All` | features per tree |
/// | `bootstrap` | `false` | draw rows with replacement |
/// | `seed` | 0 | every random draw derives from it |
/// | `n_threads` | `None` | `None`: rayon's global pool; `Some(1)`: serial; `Some(k)`: a pool of k (k ≤ [`MAX_THREADS`]) |
///
/// The result is the same, bit for bit, for any thread count.
///
/// ```
/// use anomaly_core::{IsolationForestParams, Contamination};
/// use ndarray::array;
///
/// let x = array![[0.0, 0.1], [0.1, 0.0], [0.05, 0.05], [0.1, 0.1], [5.0, 5.0]];
/// let model = IsolationForestParams::new()
///     .n_estimators(50)
///     .contamination(Contamination::Fraction(0.2))
///     .seed(7)
///     .fit(x.view())?;
/// let scores = model.score(x.view())?;
/// assert!(scores[4] > scores[0]);
/// # Ok::<(), anomaly_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestParams {
    pub(crate) n_estimators: usize,
    pub(crate) max_samples: MaxSamples,
    pub(crate) contamination: Contamination,
    pub(crate) max_features: MaxFeatures,
    pub(crate) bootstrap: bool,
    pub(crate) seed: u64,
    pub(crate) n_threads: Option<usize>,
    pub(crate) feature_names: Option<Vec<String>>,
}

impl Default for IsolationForestParams {
    fn default() -> Self {
        Self::new()
    }
}

impl IsolationForestParams {
    /// Parameters with scikit-learn's defaults and seed 0.
    pub fn new() -> Self {
        IsolationForestParams {
            n_estimators: 100,
            max_samples: MaxSamples::Auto,
            contamination: Contamination::Auto,
            max_features: MaxFeatures::All,
            bootstrap: false,
            seed: 0,
            n_threads: None,
            feature_names: None,
        }
    }

    /// Number of trees (default 100).
    pub fn n_estimators(mut self, n: usize) -> Self {
        self.n_estimators = n;
        self
    }

    /// Rows per tree (default [`MaxSamples::Auto`]).
    pub fn max_samples(mut self, m: MaxSamples) -> Self {
        self.max_samples = m;
        self
    }

    /// Expected share of anomalies (default [`Contamination::Auto`]).
    pub fn contamination(mut self, c: Contamination) -> Self {
        self.contamination = c;
        self
    }

    /// Features per tree (default [`MaxFeatures::All`]).
    pub fn max_features(mut self, m: MaxFeatures) -> Self {
        self.max_features = m;
        self
    }

    /// Draw rows with replacement (default `false`).
    pub fn bootstrap(mut self, b: bool) -> Self {
        self.bootstrap = b;
        self
    }

    /// Seed of every random draw (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Threads for fitting and batch scoring: `None` uses rayon's global pool (default).
    pub fn n_threads(mut self, n: Option<usize>) -> Self {
        self.n_threads = n;
        self
    }

    /// Feature names, used in explanations (default `x0`, `x1`, …).
    pub fn feature_names(mut self, names: Option<Vec<String>>) -> Self {
        self.feature_names = names;
        self
    }

    /// The number of trees.
    pub fn get_n_estimators(&self) -> usize {
        self.n_estimators
    }

    /// The contamination setting.
    pub fn get_contamination(&self) -> Contamination {
        self.contamination
    }

    /// The thread setting (`None`: rayon's global pool).
    pub fn get_n_threads(&self) -> Option<usize> {
        self.n_threads
    }

    /// The seed.
    pub fn get_seed(&self) -> u64 {
        self.seed
    }

    /// Checks every parameter that does not depend on the data.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first bad parameter.
    pub fn validate(&self) -> Result<()> {
        if self.n_estimators == 0 {
            return Err(Error::invalid("n_estimators", "must be at least 1"));
        }
        if self.n_estimators > MAX_ESTIMATORS {
            return Err(Error::invalid(
                "n_estimators",
                format!(
                    "{} exceeds the limit of {MAX_ESTIMATORS} trees",
                    self.n_estimators
                ),
            ));
        }
        match self.max_samples {
            MaxSamples::Count(0) => {
                return Err(Error::invalid("max_samples", "must be at least 1"));
            }
            MaxSamples::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                return Err(Error::invalid(
                    "max_samples",
                    format!("fraction {f} is not in (0, 1]"),
                ));
            }
            _ => {}
        }
        if let Contamination::Fraction(c) = self.contamination
            && !(c > 0.0 && c <= 0.5)
        {
            return Err(Error::invalid(
                "contamination",
                format!("{c} is not in (0, 0.5]"),
            ));
        }
        match self.max_features {
            MaxFeatures::Count(0) => {
                return Err(Error::invalid("max_features", "must be at least 1"));
            }
            MaxFeatures::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                return Err(Error::invalid(
                    "max_features",
                    format!("fraction {f} is not in (0, 1]"),
                ));
            }
            _ => {}
        }
        Self::check_threads(self.n_threads)
    }

    /// Checks a thread setting: `None`, or 1 to [`MAX_THREADS`].
    pub(crate) fn check_threads(n_threads: Option<usize>) -> Result<()> {
        match n_threads {
            Some(0) => Err(Error::invalid("n_threads", "must be at least 1")),
            Some(k) if k > MAX_THREADS => Err(Error::invalid(
                "n_threads",
                format!("{k} exceeds the limit of {MAX_THREADS} threads"),
            )),
            _ => Ok(()),
        }
    }

    /// Rows per tree for a data set of `n` rows (scikit-learn's `max_samples_`).
    pub(crate) fn resolve_max_samples(&self, n: usize) -> usize {
        match self.max_samples {
            MaxSamples::Auto => n.min(256),
            MaxSamples::Count(c) => {
                if c > n {
                    tracing::warn!(
                        max_samples = c,
                        n_samples = n,
                        "max_samples exceeds the number of rows; using all rows"
                    );
                }
                c.min(n)
            }
            MaxSamples::Fraction(f) => ((f * n as f64) as usize).max(1),
        }
    }

    /// Features per tree for `d` columns.
    pub(crate) fn resolve_max_features(&self, d: usize) -> Result<usize> {
        match self.max_features {
            MaxFeatures::All => Ok(d),
            MaxFeatures::Count(c) if c > d => Err(Error::invalid(
                "max_features",
                format!("{c} features requested, the data has {d}"),
            )),
            MaxFeatures::Count(c) => Ok(c),
            MaxFeatures::Fraction(f) => Ok(((f * d as f64) as usize).max(1)),
        }
    }

    /// Fits a forest on `x` (rows are samples).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a bad parameter, [`Error::EmptyInput`] for no rows or columns,
    /// [`Error::NonFinite`] for NaN or infinite values, [`Error::DimensionMismatch`] when feature names do not match
    /// the number of columns.
    pub fn fit(&self, x: ArrayView2<'_, f64>) -> Result<IsolationForest> {
        IsolationForest::fit(self.clone(), x, None)
    }

    /// Fits a forest on `x` with one weight per row, as scikit-learn 1.9's `fit(X, sample_weight=w)`: each tree
    /// draws its rows with probabilities proportional to the weights (without replacement, or with it under
    /// `bootstrap`), and is then grown as an unweighted tree on them. A row of weight 0 is never drawn; scaling all
    /// weights by a constant changes nothing but rounding; the contamination threshold is the unweighted quantile of
    /// the training scores. Rows are drawn by the core's generator, so they follow scikit-learn's law, not its
    /// exact draws.
    ///
    /// ```
    /// use anomaly_core::IsolationForestParams;
    /// use ndarray::array;
    ///
    /// let x = array![[0.0, 0.1], [0.1, 0.0], [0.05, 0.05], [0.1, 0.1], [5.0, 5.0]];
    /// let w = [1.0, 1.0, 2.0, 1.0, 0.0];
    /// // Four rows per tree, and four rows of positive weight: every tree is grown on rows 0-3, never on the last.
    /// let model = IsolationForestParams::new()
    ///     .max_samples(anomaly_core::MaxSamples::Count(4))
    ///     .fit_weighted(x.view(), &w)?;
    /// assert_eq!(model.score(x.view())?.len(), 5);
    /// // Each tree draws min(256, 5) = 5 distinct rows by default, and only 4 have a positive weight.
    /// assert!(IsolationForestParams::new().fit_weighted(x.view(), &w).is_err());
    /// # Ok::<(), anomaly_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`fit`](Self::fit); [`Error::InvalidParameter`] (`sample_weight`) for a weight count other than the rows,
    /// a NaN, infinite or negative weight, all weights zero, or (without `bootstrap`) fewer rows of positive weight
    /// than each tree draws (`max_samples`; scikit-learn refuses that too).
    pub fn fit_weighted(
        &self,
        x: ArrayView2<'_, f64>,
        sample_weight: &[f64],
    ) -> Result<IsolationForest> {
        IsolationForest::fit(self.clone(), x, Some(sample_weight))
    }

    /// Fits a forest on a sparse matrix, with sample weights as [`fit_weighted`](Self::fit_weighted) when given:
    /// the same forest, bit for bit, as [`fit`](Self::fit) or [`fit_weighted`](Self::fit_weighted) on its dense
    /// twin, without making it dense (each tree copies only its own sample).
    ///
    /// # Errors
    /// As [`fit`](Self::fit) and [`fit_weighted`](Self::fit_weighted) (the matrix's values were checked when it was
    /// built).
    pub fn fit_sparse(
        &self,
        x: &CsrMatrix<'_>,
        sample_weight: Option<&[f64]>,
    ) -> Result<IsolationForest> {
        IsolationForest::fit_sparse(self.clone(), x, sample_weight)
    }
}
