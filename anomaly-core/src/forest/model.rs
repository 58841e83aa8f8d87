//! The fitted isolation forest.

use ndarray::{Array1, ArrayView2};
use rand::SeedableRng;
use rand::seq::index;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::grow::grow_tree;
use super::parallel::install;
use super::params::{Contamination, IsolationForestParams, MAX_ESTIMATORS};
use super::path_length::average_path_length;
use super::quantile::percentile;
use super::ranked::CompiledForest;
use super::sparse::{BLOCK_VALUES, CsrMatrix, MAX_SPARSE_COLUMNS, Rows};
use super::tree::{COLUMN_BUFFER, KERNEL_MAX_FEATURES, Tree, path_lengths4};
use super::weights::{self, WeightedRows};
use crate::error::{Error, Result};
use crate::explanation::{
    Attribution, Details, Explanation, Verdict, describe_attribution, fmt_num,
};
use crate::validate;

/// Rows a thread takes at a time.
const BLOCK_ROWS: usize = 128;
/// Widest model whose 128-row column block (8 bytes a value) still fits in a 48 KiB L1 cache; wider models use
/// 32-row blocks.
const WIDE: usize = 48;

thread_local! {
    /// Each thread's dense block of rows, for input that is not already one (sparse, or a strided view); it holds
    /// zeros between uses.
    static BLOCK: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's column-major block for the scoring kernel (256 KiB, allocated once per thread).
    static COLUMNS: std::cell::RefCell<Box<[f64; COLUMN_BUFFER]>> = std::cell::RefCell::new(
        vec![0.0; COLUMN_BUFFER]
            .into_boxed_slice()
            .try_into()
            .expect("a boxed slice of COLUMN_BUFFER values"),
    );
}
/// Rows sampled to estimate each feature's typical range.
const TYPICAL_SAMPLE: usize = 4096;
/// Stream of the random generator reserved for the typical-range sample (trees use streams 0, 1, 2, …).
const TYPICAL_STREAM: u64 = u64::MAX;

/// A fitted isolation forest: immutable, `Send + Sync`, cheap to share behind an `Arc`.
///
/// Scores follow the crate's convention: [`score`](Self::score) returns s(x) = 2^(−E[h(x)] / c(max_samples)) in
/// `(0, 1]`, higher meaning more anomalous; a row is anomalous when s(x) exceeds [`threshold`](Self::threshold).
/// The scikit-learn views of the same numbers are [`score_samples`](Self::score_samples) (−s),
/// [`decision_function`](Self::decision_function), [`predict`](Self::predict) and [`offset`](Self::offset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    params: IsolationForestParams,
    n_features: usize,
    max_samples: usize,
    pub(super) trees: Vec<Tree>,
    offset: f64,
    /// 5th and 95th percentiles of each feature in (a sample of) the training data.
    typical: Vec<(f64, f64)>,
    /// The trees compiled for the rank kernel (derived, so skipped by serde and equality).
    #[serde(skip)]
    compiled: CompiledForest,
}

impl IsolationForest {
    pub(crate) fn fit(
        params: IsolationForestParams,
        x: ArrayView2<'_, f64>,
        weights: Option<&[f64]>,
    ) -> Result<Self> {
        validate::matrix(x)?;
        Self::fit_rows(params, &x, weights)
    }

    /// Fits on a sparse matrix (checked when it was built).
    pub(crate) fn fit_sparse(
        params: IsolationForestParams,
        x: &CsrMatrix<'_>,
        weights: Option<&[f64]>,
    ) -> Result<Self> {
        validate::not_empty(x.nrows(), x.ncols())?;
        check_sparse_width(x)?;
        Self::fit_rows(params, x, weights)
    }

    /// Fits on rows already checked (non-empty, finite).
    fn fit_rows<X: Rows>(
        params: IsolationForestParams,
        x: &X,
        weights: Option<&[f64]>,
    ) -> Result<Self> {
        params.validate()?;
        let (n, d) = (x.nrows(), x.ncols());
        if let Some(names) = &params.feature_names
            && names.len() != d
        {
            return Err(Error::DimensionMismatch {
                expected: names.len(),
                got: d,
            });
        }
        if n < 2 {
            return Err(Error::NotEnoughSamples { needed: 2, got: n });
        }
        let mut model = IsolationForest {
            n_features: d,
            max_samples: 0,
            trees: Vec::new(),
            offset: -0.5,
            typical: typical_ranges(x, params.seed),
            params,
            compiled: CompiledForest::default(),
        };
        model.grow_trees(x, model.params.n_estimators, weights)?;
        tracing::debug!(
            n_samples = n,
            n_features = d,
            n_trees = model.trees.len(),
            max_samples = model.max_samples,
            "fitted isolation forest"
        );
        Ok(model)
    }

    /// Returns a forest with `additional` more trees grown on `x`, like scikit-learn's `warm_start`.
    ///
    /// Tree `i` is grown from stream `i` of the seeded generator, so growing 100 trees and then 50 more gives the
    /// same forest as fitting 150 at once on the same data. As in scikit-learn, `max_samples` is resolved again for
    /// `x` and a contamination threshold is recomputed on `x`.
    ///
    /// # Errors
    /// As [`IsolationForestParams::fit`], [`Error::DimensionMismatch`] if `x` has another width, and
    /// [`Error::InvalidParameter`] (`additional`) when the forest would have more than
    /// [`MAX_ESTIMATORS`](crate::forest::MAX_ESTIMATORS) trees.
    pub fn grow(&self, x: ArrayView2<'_, f64>, additional: usize) -> Result<Self> {
        self.grow_with(x, additional, None)
    }

    /// As [`grow`](Self::grow), the new trees drawing their rows by `sample_weight` (one weight per row of `x`), as
    /// [`IsolationForestParams::fit_weighted`] does.
    ///
    /// # Errors
    /// As [`grow`](Self::grow) and [`fit_weighted`](IsolationForestParams::fit_weighted).
    pub fn grow_weighted(
        &self,
        x: ArrayView2<'_, f64>,
        additional: usize,
        sample_weight: &[f64],
    ) -> Result<Self> {
        self.grow_with(x, additional, Some(sample_weight))
    }

    /// As [`grow_weighted`](Self::grow_weighted) (or [`grow`](Self::grow) without weights) on a sparse matrix.
    ///
    /// # Errors
    /// As [`grow_weighted`](Self::grow_weighted).
    pub fn grow_sparse(
        &self,
        x: &CsrMatrix<'_>,
        additional: usize,
        sample_weight: Option<&[f64]>,
    ) -> Result<Self> {
        self.check_sparse(x)?;
        self.grow_rows(x, additional, sample_weight)
    }

    /// Checks a sparse matrix for this forest: its width, rows, and the sparse width limit.
    fn check_sparse(&self, x: &CsrMatrix<'_>) -> Result<()> {
        if x.ncols() != self.n_features && x.nrows() > 0 {
            return Err(Error::DimensionMismatch {
                expected: self.n_features,
                got: x.ncols(),
            });
        }
        validate::not_empty(x.nrows(), x.ncols())?;
        check_sparse_width(x)
    }

    fn grow_with(
        &self,
        x: ArrayView2<'_, f64>,
        additional: usize,
        weights: Option<&[f64]>,
    ) -> Result<Self> {
        validate::matrix_with_width(x, self.n_features)?;
        self.grow_rows(&x, additional, weights)
    }

    fn grow_rows<X: Rows>(
        &self,
        x: &X,
        additional: usize,
        weights: Option<&[f64]>,
    ) -> Result<Self> {
        if x.nrows() < 2 {
            return Err(Error::NotEnoughSamples {
                needed: 2,
                got: x.nrows(),
            });
        }
        let mut model = self.clone();
        model.params.n_estimators = self
            .params
            .n_estimators
            .checked_add(additional)
            .filter(|&n| n <= MAX_ESTIMATORS)
            .ok_or_else(|| {
                Error::invalid(
                    "additional",
                    format!("the forest would exceed the limit of {MAX_ESTIMATORS} trees"),
                )
            })?;
        model.grow_trees(x, additional, weights)?;
        Ok(model)
    }

    /// Grows `count` trees after the existing ones, their rows drawn by `weights` when given, then sets
    /// `max_samples` and the offset.
    fn grow_trees<X: Rows>(&mut self, x: &X, count: usize, weights: Option<&[f64]>) -> Result<()> {
        let n = x.nrows();
        let max_samples = self.params.resolve_max_samples(n);
        if max_samples < 2 {
            return Err(Error::invalid(
                "max_samples",
                "each tree needs at least 2 rows",
            ));
        }
        let weighted = match weights {
            Some(w) => {
                weights::check(w, n, max_samples, self.params.bootstrap)?;
                Some(WeightedRows::new(w))
            }
            None => None,
        };
        let n_sub_features = self.params.resolve_max_features(self.n_features)?;
        let max_depth = (max_samples.max(2) as f64).log2().ceil() as u32;
        let first = self.trees.len();
        let params = &self.params;
        let d = self.n_features;
        let build = |i: usize| {
            let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
            rng.set_stream(i as u64);
            let features: Vec<usize> = if n_sub_features == d {
                (0..d).collect()
            } else {
                let mut f = index::sample(&mut rng, d, n_sub_features).into_vec();
                f.sort_unstable();
                f
            };
            let rows: Vec<usize> = match (&weighted, params.bootstrap) {
                (Some(w), true) => w.draw_with_replacement(max_samples, &mut rng),
                (Some(w), false) => w.draw_without_replacement(max_samples, &mut rng),
                (None, true) => (0..max_samples)
                    .map(|_| rand::Rng::random_range(&mut rng, 0..n))
                    .collect(),
                (None, false) => index::sample(&mut rng, n, max_samples).into_vec(),
            };
            Tree::from_grown(&grow_tree(x, &rows, &features, max_depth, &mut rng))
        };
        let new_trees: Vec<Tree> = if params.n_threads == Some(1) {
            (first..first + count).map(build).collect()
        } else {
            install(params.n_threads, || {
                (first..first + count).into_par_iter().map(build).collect()
            })?
        };
        self.trees.extend(new_trees);
        // Compiled now, so the first scoring call does not pay for it.
        self.compiled = CompiledForest::default();
        self.compiled.get(&self.trees, self.n_features);
        self.max_samples = max_samples;
        self.offset = match self.params.contamination {
            Contamination::Auto => -0.5,
            Contamination::Fraction(c) => {
                let samples: Vec<f64> = self
                    .path_sums(x, self.params.n_threads)?
                    .into_iter()
                    .map(|h| -self.to_score(h))
                    .collect();
                percentile(&samples, 100.0 * c)
            }
        };
        Ok(())
    }

    /// Number of features the model was fitted on.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of trees.
    pub fn n_estimators(&self) -> usize {
        self.trees.len()
    }

    /// Rows each tree was grown on (scikit-learn's `max_samples_`).
    pub fn max_samples(&self) -> usize {
        self.max_samples
    }

    /// The parameters the model was fitted with.
    pub fn params(&self) -> &IsolationForestParams {
        &self.params
    }

    /// Feature names, if given at fit time.
    pub fn feature_names(&self) -> Option<&[String]> {
        self.params.feature_names.as_deref()
    }

    /// scikit-learn's `offset_`: `decision_function = score_samples − offset_`. −0.5 with `Contamination::Auto`.
    pub fn offset(&self) -> f64 {
        self.offset
    }

    /// The score above which a row is anomalous: `−offset_` (0.5 with `Contamination::Auto`).
    pub fn threshold(&self) -> f64 {
        -self.offset
    }

    /// 5th and 95th percentiles of each feature in the training data (estimated on up to 4096 sampled rows).
    pub fn typical_ranges(&self) -> &[(f64, f64)] {
        &self.typical
    }

    /// The normalising constant c(max_samples).
    fn normaliser(&self) -> f64 {
        average_path_length(self.max_samples as f64)
    }

    fn to_score(&self, path_sum: f64) -> f64 {
        (-path_sum / (self.trees.len() as f64 * self.normaliser())).exp2()
    }

    /// Sum over trees (in tree order) of each row's path length, on the threads `n_threads` asks for (as
    /// [`IsolationForestParams::n_threads`]). `x` is checked (width, finite values) by the caller.
    fn path_sums<X: Rows>(&self, x: &X, n_threads: Option<usize>) -> Result<Vec<f64>> {
        let mut out = vec![0.0; x.nrows()];
        // 128 rows a block, fewer when rows are so wide that a block would pass BLOCK_VALUES.
        let rows = (BLOCK_VALUES / x.ncols().max(1)).clamp(1, BLOCK_ROWS);
        let work = |(b, acc): (usize, &mut [f64])| {
            BLOCK.with_borrow_mut(|scratch| {
                x.block(b * rows, acc.len(), scratch, |block| {
                    self.accumulate_block(block, acc)
                })
            })
        };
        if n_threads == Some(1) {
            out.chunks_mut(rows).enumerate().for_each(work);
        } else {
            install(n_threads, || {
                out.par_chunks_mut(rows).enumerate().for_each(work)
            })?;
        }
        Ok(out)
    }

    /// Adds every tree's path lengths for the rows of a row-major block (`n_features` values a row) to `acc`, in
    /// tree order, by the fastest kernel that takes the forest.
    fn accumulate_block(&self, block: &[f64], acc: &mut [f64]) {
        let d = self.n_features;
        if let Some(ranked) = self.compiled.get(&self.trees, d)
            && ranked.accumulate(block, acc)
        {
            // Walked by the SIMD rank kernel.
        } else if d <= WIDE {
            self.score_columns::<128>(block, d, acc);
        } else if d <= KERNEL_MAX_FEATURES {
            self.score_columns::<32>(block, d, acc);
        } else {
            for tree in &self.trees {
                tree.accumulate(block, d, acc);
            }
        }
    }

    /// Adds every tree's path lengths for the rows of a row-major block (`d ≤ 256` values a row) to `acc`, through
    /// the column kernel in sub-blocks of `B` rows. Trees are summed in order for every row, as in
    /// [`score_row`](Self::score_row), so the result is bit-identical to it.
    fn score_columns<const B: usize>(&self, block: &[f64], d: usize, acc: &mut [f64]) {
        COLUMNS.with_borrow_mut(|cols| {
            let shift = B.trailing_zeros();
            for (sub, out) in block.chunks(B * d).zip(acc.chunks_mut(B)) {
                for (r, row) in sub.chunks_exact(d).enumerate() {
                    for (f, &v) in row.iter().enumerate() {
                        cols[(f << shift) | r] = v;
                    }
                }
                // Rows past the end of a short block hold stale finite values; their sums are discarded.
                let mut local = [0.0; B];
                for tree in &self.trees {
                    if !tree.accumulate_columns::<B>(cols, &mut local) {
                        for (r, row) in sub.chunks_exact(d).enumerate() {
                            local[r] += tree.path_length(row);
                        }
                    }
                }
                for (o, l) in out.iter_mut().zip(&local) {
                    *o += l;
                }
            }
        });
    }

    /// Anomaly score s(x) in `(0, 1]` of every row; higher is more anomalous.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`], [`Error::EmptyInput`] or [`Error::NonFinite`].
    pub fn score(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        self.score_on_threads(x, self.params.n_threads)
    }

    /// As [`score`](Self::score), on `n_threads` threads instead of the fitted setting (the meaning of
    /// [`IsolationForestParams::n_threads`]: `None` is rayon's global pool, `Some(1)` the calling thread). Scores are
    /// the same bits for any thread count.
    ///
    /// # Errors
    /// As [`score`](Self::score); [`Error::InvalidParameter`] (`n_threads`) for 0 or more than
    /// [`MAX_THREADS`](crate::forest::MAX_THREADS).
    pub fn score_on_threads(
        &self,
        x: ArrayView2<'_, f64>,
        n_threads: Option<usize>,
    ) -> Result<Array1<f64>> {
        IsolationForestParams::check_threads(n_threads)?;
        validate::matrix_with_width(x, self.n_features)?;
        let sums = self.path_sums(&x, n_threads)?;
        Ok(sums.into_iter().map(|h| self.to_score(h)).collect())
    }

    /// Anomaly score s(x) of every row of a sparse matrix: the same bits as [`score`](Self::score) on its dense
    /// twin, without making it dense (blocks of 128 rows are scattered into a dense buffer of 128 × width values
    /// per thread).
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] for another width, [`Error::EmptyInput`] for no rows.
    pub fn score_sparse(&self, x: &CsrMatrix<'_>) -> Result<Array1<f64>> {
        self.score_sparse_on_threads(x, self.params.n_threads)
    }

    /// As [`score_sparse`](Self::score_sparse), on `n_threads` threads (as [`score_on_threads`](Self::score_on_threads)).
    ///
    /// # Errors
    /// As [`score_sparse`](Self::score_sparse) and [`score_on_threads`](Self::score_on_threads).
    pub fn score_sparse_on_threads(
        &self,
        x: &CsrMatrix<'_>,
        n_threads: Option<usize>,
    ) -> Result<Array1<f64>> {
        IsolationForestParams::check_threads(n_threads)?;
        self.check_sparse(x)?;
        let sums = self.path_sums(x, n_threads)?;
        Ok(sums.into_iter().map(|h| self.to_score(h)).collect())
    }

    /// Anomaly score of one row, without allocating. Bit-identical to the row's entry in [`score`](Self::score).
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] or [`Error::NonFinite`] (reported as row 0).
    pub fn score_row(&self, row: &[f64]) -> Result<f64> {
        validate::row(row, self.n_features, 0)?;
        let mut sum = [0.0];
        if let Some(ranked) = self.compiled.get(&self.trees, self.n_features)
            && ranked.suits_single_rows()
            && ranked.accumulate(row, &mut sum)
        {
            return Ok(self.to_score(sum[0]));
        }
        // Four trees at a time in lockstep; the sum still runs in tree order, so the bits match `score`.
        let mut sum = 0.0;
        let mut groups = self.trees.chunks_exact(4);
        for group in &mut groups {
            match path_lengths4([&group[0], &group[1], &group[2], &group[3]], row) {
                Some(h) => h.iter().for_each(|v| sum += v),
                None => group.iter().for_each(|t| sum += t.path_length(row)),
            }
        }
        for tree in groups.remainder() {
            sum += tree.path_length(row);
        }
        Ok(self.to_score(sum))
    }

    /// Score, threshold and decision of one row.
    ///
    /// # Errors
    /// As [`score_row`](Self::score_row).
    pub fn verdict_row(&self, row: &[f64]) -> Result<Verdict> {
        Ok(Verdict::new(self.score_row(row)?, self.threshold()))
    }

    /// scikit-learn's `score_samples`: −s(x), lower is more anomalous.
    ///
    /// # Errors
    /// As [`score`](Self::score).
    pub fn score_samples(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        Ok(self.score(x)?.mapv(|s| -s))
    }

    /// scikit-learn's `decision_function`: `score_samples − offset_`, negative for anomalies.
    ///
    /// # Errors
    /// As [`score`](Self::score).
    pub fn decision_function(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        Ok(self.score_samples(x)?.mapv(|v| v - self.offset))
    }

    /// scikit-learn's `predict`: −1 for anomalies, +1 for inliers.
    ///
    /// # Errors
    /// As [`score`](Self::score).
    pub fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<i32>> {
        Ok(self
            .decision_function(x)?
            .mapv(|v| if v < 0.0 { -1 } else { 1 }))
    }

    /// Per-feature attributions of one row, most important first.
    ///
    /// The method is a local variant of DIFFI (Carletti, Terzi & Susto, "Interpretable Anomaly Detection with DIFFI:
    /// Depth-based Feature Importance of Isolation Forest", Eng. Appl. of AI, 2023): every split on the row's path
    /// in every tree credits its feature with `(1 − n_child / n_node) / h_t(x)`: splits that cut the row away from
    /// most of the node's training rows count most, and trees that isolate the row quickly (short path `h_t`) count
    /// more than trees where it sits deep among its peers. Credits are normalised to sum to 1.
    ///
    /// # Errors
    /// As [`score_row`](Self::score_row).
    pub fn attributions(&self, row: &[f64]) -> Result<Vec<Attribution>> {
        validate::row(row, self.n_features, 0)?;
        let mut credit = vec![0.0; self.n_features];
        credit_splits(&self.trees, row, &mut credit);
        Ok(rank_attributions(
            &credit,
            row,
            &self.typical,
            self.feature_names(),
        ))
    }

    /// The verdict on one row with attributions, path-length details and a one-sentence rationale.
    ///
    /// # Errors
    /// As [`score_row`](Self::score_row).
    pub fn explain_row(&self, row: &[f64]) -> Result<Explanation> {
        let verdict = self.verdict_row(row)?;
        let attributions = self.attributions(row)?;
        let normaliser = self.normaliser();
        let mean_path_length = -verdict.score.log2() * normaliser;
        let rationale = format!(
            "{}: score {} {} the threshold {} (mean path length {}, {} expected for a typical row){}.",
            if verdict.is_anomaly {
                "Anomalous"
            } else {
                "Normal"
            },
            fmt_num(verdict.score),
            if verdict.is_anomaly {
                "exceeds"
            } else {
                "does not exceed"
            },
            fmt_num(verdict.threshold),
            fmt_num(mean_path_length),
            fmt_num(normaliser),
            lead_features(&attributions),
        );
        Ok(Explanation {
            score: verdict.score,
            threshold: verdict.threshold,
            is_anomaly: verdict.is_anomaly,
            attributions,
            details: Details::IsolationForest {
                mean_path_length,
                normaliser,
                n_trees: self.trees.len(),
            },
            rationale,
        })
    }

    /// Checks a model restored from bytes, so that scoring it cannot fail or panic.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.n_features == 0 || self.trees.is_empty() || self.max_samples < 2 {
            return Err("empty model".into());
        }
        if let Err(e) = self.params.validate() {
            return Err(format!("invalid forest parameters: {e}"));
        }
        if self.trees.len() > MAX_ESTIMATORS {
            return Err(format!("more than {MAX_ESTIMATORS} trees"));
        }
        if self.typical.len() != self.n_features {
            return Err("typical ranges do not match the number of features".into());
        }
        if let Some(names) = &self.params.feature_names
            && names.len() != self.n_features
        {
            return Err("feature names do not match the number of features".into());
        }
        if !self.offset.is_finite() {
            return Err("non-finite offset".into());
        }
        for tree in &self.trees {
            tree.check(self.n_features)?;
        }
        Ok(())
    }
}

/// The rationale's closing clause: the most credited features that lie outside their typical range, or, when none
/// does, the most credited feature and the note that the combination is what is unusual.
pub(crate) fn lead_features(attributions: &[Attribution]) -> String {
    let atypical: Vec<String> = attributions
        .iter()
        .filter(|a| a.contribution > 0.0 && a.is_atypical())
        .take(2)
        .map(|a| {
            format!(
                "{} ({:.0}% of the isolation)",
                describe_attribution(a),
                100.0 * a.contribution
            )
        })
        .collect();
    if !atypical.is_empty() {
        return format!("; {}", atypical.join(", and "));
    }
    match attributions.first().filter(|a| a.contribution > 0.0) {
        Some(a) => format!(
            "; every feature is within its typical range, so the combination is what stands out, led by `{}` ({:.0}%)",
            a.label(),
            100.0 * a.contribution
        ),
        None => String::new(),
    }
}

/// Adds each split's DIFFI-style credit `(1 − n_child / n_node) / h_t(x)` along the row's path in every tree.
pub(crate) fn credit_splits(trees: &[Tree], row: &[f64], credit: &mut [f64]) {
    let mut splits: Vec<(usize, f64)> = Vec::with_capacity(32);
    for tree in trees {
        splits.clear();
        let h = tree.walk(row, |f, n_node, n_child| {
            splits.push((f, 1.0 - n_child as f64 / n_node.max(1) as f64));
        });
        if h > 0.0 {
            for &(f, w) in &splits {
                credit[f] += w / h;
            }
        }
    }
}

/// Normalises credits into attributions, most important first.
pub(crate) fn rank_attributions(
    credit: &[f64],
    row: &[f64],
    typical: &[(f64, f64)],
    names: Option<&[String]>,
) -> Vec<Attribution> {
    let total: f64 = credit.iter().sum();
    let mut out: Vec<Attribution> = credit
        .iter()
        .enumerate()
        .map(|(f, &c)| Attribution {
            feature: f,
            name: names.and_then(|n| n.get(f).cloned()),
            value: row[f],
            contribution: if total > 0.0 { c / total } else { 0.0 },
            typical_low: typical[f].0,
            typical_high: typical[f].1,
        })
        .collect();
    out.sort_by(|a, b| {
        b.contribution
            .total_cmp(&a.contribution)
            .then(a.feature.cmp(&b.feature))
    });
    out
}

/// 5th–95th percentile of each column, on a seeded sample of at most [`TYPICAL_SAMPLE`] rows.
/// Refuses a sparse matrix wider than [`MAX_SPARSE_COLUMNS`].
fn check_sparse_width(x: &CsrMatrix<'_>) -> Result<()> {
    if x.ncols() > MAX_SPARSE_COLUMNS {
        return Err(Error::invalid(
            "x",
            format!(
                "{} columns: a sparse matrix may have at most {MAX_SPARSE_COLUMNS}",
                x.ncols()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn typical_ranges<X: Rows>(x: &X, seed: u64) -> Vec<(f64, f64)> {
    let n = x.nrows();
    let rows: Vec<usize> = if n <= TYPICAL_SAMPLE {
        (0..n).collect()
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(TYPICAL_STREAM);
        index::sample(&mut rng, n, TYPICAL_SAMPLE).into_vec()
    };
    x.typical_ranges(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::params::MaxSamples;
    use ndarray::Array2;

    fn grid(n: usize) -> Array2<f64> {
        // Quasi-random (additive recurrence) points: every value distinct.
        Array2::from_shape_fn((n, 2), |(i, j)| {
            (i as f64 * [0.618_034, 0.754_878][j]).fract()
        })
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<IsolationForest>();
        assert_send_sync::<IsolationForestParams>();
    }

    #[test]
    fn identical_rows_score_one_half() {
        let x = Array2::from_elem((10, 3), 1.0);
        let m = IsolationForestParams::new().fit(x.view()).unwrap();
        // Every tree is a single leaf of 10 rows: h = c(10) = normaliser, so s = 0.5.
        let s = m.score_row(&[1.0, 1.0, 1.0]).unwrap();
        assert!((s - 0.5).abs() < 1e-12, "{s}");
    }

    #[test]
    fn sparse_and_dense_layouts_agree_on_rank() {
        let x = grid(20_000);
        let deep = IsolationForestParams::new()
            .n_estimators(5)
            .max_samples(MaxSamples::Count(10_000))
            .fit(x.view())
            .unwrap();
        assert!(matches!(deep.trees[0], Tree::Sparse { .. }));
        let scores = deep.score(x.view()).unwrap();
        for (i, row) in x.outer_iter().enumerate().take(50) {
            assert_eq!(scores[i], deep.score_row(row.as_slice().unwrap()).unwrap());
        }
    }

    #[test]
    fn one_row_is_not_enough() {
        let x = Array2::from_elem((1, 3), 1.0);
        assert_eq!(
            IsolationForestParams::new().fit(x.view()).unwrap_err(),
            Error::NotEnoughSamples { needed: 2, got: 1 }
        );
    }
}
