//! Streaming isolation forest: a forest over a rolling window, EMA-smoothed scores, an adaptive threshold and a
//! minimum streak before reporting.

use std::collections::VecDeque;

use ndarray::ArrayView2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::rolling::RollingStats;
use super::step_forest::{GROUP, StepForest, StepTree};
use super::{StreamingDetector, check_observation};
use crate::error::{Error, Result};
use crate::explanation::{Details, Explanation, Verdict, fmt_num};
use crate::forest::{
    GrowNode, LANES, MAX_ESTIMATORS, Tree, average_path_length, credit_splits, grow_tree,
    grow_tree_sorted, lead_features, path_lengths_lanes, percentile_select, rank_attributions,
    sort_sample, typical_ranges,
};

/// Most rows any tree is grown on, as in the batch forest's `max_samples = auto`.
const MAX_TREE_SAMPLES: usize = 256;

/// Parameters of a [`StreamingIsolationForest`], named as the metric-stream system names them.
///
/// | parameter | default | meaning |
/// | --- | --- | --- |
/// | `batch_size` | 20 | points between two refits |
/// | `window_size` | 1024 | most recent points the forest is grown on (each tree on 256 of them) |
/// | `warmup` | 100 | points before the first forest is grown |
/// | `n_estimators` | 50 | trees (at most [`MAX_ESTIMATORS`](crate::forest::MAX_ESTIMATORS)) |
/// | `smoothing_alpha` | 0.25 | EMA weight of each new raw score |
/// | `threshold_sigma` | 3 | adaptive threshold = rolling mean + k · rolling std of the smoothed scores |
/// | `threshold_window` | 100 | smoothed scores the adaptive threshold is computed over |
/// | `min_consecutive` | 3 | anomalous points in a row before one is reported |
/// | `contamination` | 0.1 | the threshold is never below the `1 − contamination` quantile of recent smoothed scores |
/// | `seed` | 0 | every random draw derives from it |
///
/// Nothing is allocated for `window_size`, `threshold_window` or `batch_size` up front: the buffers grow as points
/// arrive, so a large value costs memory only for the points actually seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamingIsolationForestParams {
    batch_size: usize,
    window_size: usize,
    warmup: usize,
    n_estimators: usize,
    smoothing_alpha: f64,
    threshold_sigma: f64,
    threshold_window: usize,
    min_consecutive: usize,
    contamination: f64,
    seed: u64,
}

impl Default for StreamingIsolationForestParams {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! setter {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(mut self, v: $ty) -> Self {
            self.$name = v;
            self
        }
    )*};
}

impl StreamingIsolationForestParams {
    /// The defaults in the table above.
    pub fn new() -> Self {
        StreamingIsolationForestParams {
            batch_size: 20,
            window_size: 1024,
            warmup: 100,
            n_estimators: 50,
            smoothing_alpha: 0.25,
            threshold_sigma: 3.0,
            threshold_window: 100,
            min_consecutive: 3,
            contamination: 0.1,
            seed: 0,
        }
    }

    setter!(
        /// Points between two refits (default 20).
        batch_size: usize,
        /// Most recent points the forest is grown on (default 1024; each tree samples 256 of them). The whole
        /// forest is renewed once per window (`n_estimators · batch_size / window_size` trees earned per batch,
        /// regrown eight at a time, or the whole forest at once when it has eight trees or fewer): with 1024 points
        /// that is one tree per batch of 20, so eight trees every eight batches, which keeps a refit cheap and the
        /// forest stable.
        window_size: usize,
        /// Points before the first forest is grown (default 100).
        warmup: usize,
        /// Number of trees (default 50).
        n_estimators: usize,
        /// EMA weight of each new raw score (default 0.25).
        smoothing_alpha: f64,
        /// k of the adaptive threshold (default 3).
        threshold_sigma: f64,
        /// Smoothed scores the adaptive threshold is computed over (default 100).
        threshold_window: usize,
        /// Anomalous points in a row before reporting (default 3).
        min_consecutive: usize,
        /// At most this share of recent smoothed scores can exceed the threshold (default 0.1).
        contamination: f64,
        /// Seed (default 0).
        seed: u64,
    );

    /// Checks the parameters and builds an empty detector.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first bad parameter.
    pub fn build(self) -> Result<StreamingIsolationForest> {
        if self.batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
        }
        if self.window_size < 2 {
            return Err(Error::invalid("window_size", "must be at least 2"));
        }
        if self.warmup < 2 || self.warmup > self.window_size {
            return Err(Error::invalid(
                "warmup",
                "must be between 2 and window_size",
            ));
        }
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
        if !(self.smoothing_alpha > 0.0 && self.smoothing_alpha <= 1.0) {
            return Err(Error::invalid("smoothing_alpha", "must be in (0, 1]"));
        }
        if !(self.threshold_sigma.is_finite() && self.threshold_sigma >= 0.0) {
            return Err(Error::invalid(
                "threshold_sigma",
                "must be finite and non-negative",
            ));
        }
        if self.threshold_window < 2 {
            return Err(Error::invalid("threshold_window", "must be at least 2"));
        }
        if self.min_consecutive == 0 {
            return Err(Error::invalid("min_consecutive", "must be at least 1"));
        }
        if !(self.contamination > 0.0 && self.contamination <= 0.5) {
            return Err(Error::invalid("contamination", "must be in (0, 0.5]"));
        }
        Ok(StreamingIsolationForest {
            rng: ChaCha8Rng::seed_from_u64(self.seed),
            smoothed_stats: RollingStats::new(self.threshold_window),
            recent: VecDeque::new(),
            params: self,
            dims: None,
            window: Vec::new(),
            window_len: 0,
            window_head: 0,
            trees: Trees::default(),
            next_replace: 0,
            earned: 0,
            since_refit: 0,
            quantile_floor: f64::NEG_INFINITY,
            smoothed: None,
            consecutive: 0,
            seen: 0,
        })
    }
}

/// One tree with the normaliser c(m) and the bounding box of the sample it was grown on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WindowTree {
    tree: Tree,
    normaliser: f64,
    lo: Vec<f64>,
    hi: Vec<f64>,
}

impl WindowTree {
    /// Path length with the range extension: a point outside the sample's box would be cut off by the first split
    /// with probability `p = extension / (range + extension)` (summed over dimensions, as a random cut forest
    /// chooses cuts in proportion to range), so `E[h] = p · 1 + (1 − p) · h(x)`. Inside the box this is `h(x)`.
    #[inline]
    fn path_length(&self, x: &[f64]) -> f64 {
        self.extend(x, self.tree.path_length(x))
    }

    /// Applies the range extension to a plain path length `h` of `x`.
    #[inline]
    fn extend(&self, x: &[f64], h: f64) -> f64 {
        let mut extension = 0.0;
        let mut range = 0.0;
        for ((&v, &lo), &hi) in x.iter().zip(&self.lo).zip(&self.hi) {
            extension += (lo - v).max(0.0) + (v - hi).max(0.0);
            range += hi - lo;
        }
        extended(h, extension, range)
    }

    fn steps(&self) -> StepTree<'_> {
        StepTree {
            tree: &self.tree,
            lo: self.lo.first().copied().unwrap_or(f64::NAN),
            hi: self.hi.first().copied().unwrap_or(f64::NAN),
            normaliser: self.normaliser,
        }
    }
}

/// The range extension of a path length `h`, for a point `extension` beyond a box of total side `range`.
#[inline]
pub(super) fn extended(h: f64, extension: f64, range: f64) -> f64 {
    if extension > 0.0 {
        let p = (extension / (range + extension)).min(1.0);
        if p.is_finite() {
            p + (1.0 - p) * h
        } else {
            1.0
        }
    } else {
        h
    }
}

/// The trees of the forest and, for one feature, their step functions: derived from the trees, so never stored and
/// rebuilt when read.
#[derive(Debug, Clone, Default)]
struct Trees {
    list: Vec<WindowTree>,
    steps: Option<StepForest>,
}

impl Trees {
    /// Step functions of every tree, when the forest has one feature and every tree can be represented.
    fn index(list: &[WindowTree]) -> Option<StepForest> {
        if list.is_empty() || list.iter().any(|t| t.lo.len() != 1) {
            return None;
        }
        let trees: Vec<StepTree<'_>> = list.iter().map(WindowTree::steps).collect();
        StepForest::build(&trees)
    }

    /// Puts `tree` in `slot` (the next one when `slot` is the length, or beyond it). The step functions are
    /// brought up to date by [`Trees::refresh`] once a group's trees are all in.
    fn put(&mut self, slot: usize, tree: WindowTree) {
        match self.list.get_mut(slot) {
            Some(old) => *old = tree,
            None => self.list.push(tree),
        }
    }

    /// The tree in `slot`, if any, leaving an empty tree there until [`Trees::put`] fills it.
    fn take_tree(&mut self, slot: usize) -> Option<Tree> {
        let t = self.list.get_mut(slot)?;
        Some(std::mem::replace(&mut t.tree, Tree::empty()))
    }

    /// Rebuilds the step functions of the group holding `slot`, after its trees were regrown; drops them when a
    /// tree cannot be represented, and builds every group when there are none (a forest just completed, or one
    /// whose step functions were dropped).
    fn refresh(&mut self, slot: usize) {
        let g = slot / GROUP;
        match &mut self.steps {
            Some(steps) => {
                let end = (g * GROUP + GROUP).min(self.list.len());
                let trees: Vec<StepTree<'_>> = self.list[(g * GROUP).min(end)..end]
                    .iter()
                    .map(WindowTree::steps)
                    .collect();
                if !steps.rebuild(g, &trees) {
                    self.steps = None;
                }
            }
            None => self.reindex(),
        }
    }

    /// Builds the step functions once a forest is complete (or after it was read).
    fn reindex(&mut self) {
        self.steps = Self::index(&self.list);
    }
}

impl PartialEq for Trees {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Serialize for Trees {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.list.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Trees {
    /// Reads the trees; step functions are built only when every tree passes its check, so a hostile snapshot is
    /// refused by [`StreamingIsolationForest::check`] before anything reads it.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let list = Vec::<WindowTree>::deserialize(d)?;
        let valid = list
            .iter()
            .all(|t| t.tree.check(1).is_ok() && t.lo.len() == 1 && t.hi.len() == 1);
        let steps = if valid { Self::index(&list) } else { None };
        Ok(Trees { list, steps })
    }
}

impl std::ops::Deref for Trees {
    type Target = [WindowTree];

    fn deref(&self) -> &[WindowTree] {
        &self.list
    }
}

/// A buffered point with its scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Recent {
    point: Vec<f64>,
    raw: f64,
    smoothed: f64,
}

/// What the detector concludes about one point, before it is learnt.
#[derive(Debug, Clone, Copy)]
struct Assessment {
    raw: f64,
    smoothed: f64,
    mean: f64,
    std: f64,
    threshold: f64,
    consecutive: usize,
    is_anomaly: bool,
    warm: bool,
}

/// An isolation forest over a rolling window of a stream.
///
/// Unlike the batch forest, which keeps scikit-learn's definition, path lengths here include a range extension (see
/// `WindowTree::path_length`): a plain isolation tree routes every value beyond its sample's maximum to the same
/// leaf, so a spike far outside the window would score no higher than the window's largest normal point.
///
/// The first forest is grown once `warmup` points are in the window. After that, every `batch_size` points earn
/// `ceil(n_estimators · batch_size / window_size)` new trees, and the oldest trees are replaced by trees grown on
/// the current window a group of eight at a time, as soon as the batches since the last regrowth have earned a
/// group (with the defaults, eight trees every eight batches of 20 points). The whole forest is renewed once per
/// window and a refit costs a few trees, not a whole forest; regrowing by groups lets a one-feature forest rebuild
/// the step functions of one group once, instead of once per tree (see the `step_forest` module). Each point's raw
/// score (in `(0, 1]`, as [`IsolationForest`](crate::IsolationForest)) is smoothed by an EMA (`smoothing_alpha`);
/// the point is a candidate when the smoothed score exceeds the adaptive threshold: the rolling mean +
/// `threshold_sigma` rolling standard deviations of past smoothed scores, and never less than their
/// `1 − contamination` quantile (refreshed every batch). It is reported (`is_anomaly`) once `min_consecutive`
/// candidates come in a row, so a one-point spike is reported only with `min_consecutive = 1`: the rule exists to
/// report sustained deviations, and smoothing carries a single spike above the threshold for about two points.
///
/// Score: the smoothed score, in `(0, 1]`. Warm-up: until the forest exists and `batch_size` smoothed scores have
/// been seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamingIsolationForest {
    params: StreamingIsolationForestParams,
    dims: Option<usize>,
    /// Ring of the last `window_size` points, row-major. It grows as points arrive until it holds `window_size`
    /// rows; until then `window_head` is its number of rows. (Snapshots written before it grew lazily hold all
    /// `window_size` rows from the first point, zeros beyond `window_len`.)
    window: Vec<f64>,
    window_len: usize,
    window_head: usize,
    trees: Trees,
    next_replace: usize,
    /// Trees the batches since the last regrowth have earned (fewer than a group).
    #[serde(default)]
    earned: usize,
    since_refit: usize,
    #[serde(with = "rng_state")]
    rng: ChaCha8Rng,
    smoothed_stats: RollingStats,
    /// Floor of the adaptive threshold: the `1 − contamination` quantile of recent smoothed scores; −∞ before the
    /// first refit, which JSON writes as `null`.
    #[serde(deserialize_with = "floor_or_null")]
    quantile_floor: f64,
    smoothed: Option<f64>,
    consecutive: usize,
    recent: VecDeque<Recent>,
    seen: u64,
}

impl StreamingIsolationForest {
    /// The parameters.
    pub fn params(&self) -> &StreamingIsolationForestParams {
        &self.params
    }

    /// Points learnt so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    fn window_view(&self) -> ArrayView2<'_, f64> {
        let d = self.dims.unwrap_or(1);
        ArrayView2::from_shape((self.window_len, d), &self.window[..self.window_len * d])
            .expect("window ring holds window_len rows")
    }

    /// Raw forest score of a validated point. The trees are walked [`LANES`] at a time, level by level: a
    /// series' forest is usually not in cache when its next point comes (one forest per series), so the walk is
    /// bound by memory latency, and walking the trees side by side keeps many loads in flight.
    ///
    /// A one-feature forest reads its step functions instead (see [`StepForest`]): the same sum, in a few cache
    /// lines per group of trees.
    fn raw_score(&self, x: &[f64]) -> f64 {
        if let (Some(steps), [x]) = (&self.trees.steps, x) {
            return (-steps.sum(*x) / self.trees.len() as f64).exp2();
        }
        self.walk_score(x)
    }

    /// Raw score by walking every tree.
    fn walk_score(&self, x: &[f64]) -> f64 {
        let mut sum = 0.0;
        let mut h = [0.0; LANES];
        for group in self.trees.chunks(LANES) {
            let mut refs: [&Tree; LANES] = [&group[0].tree; LANES];
            for (r, t) in refs.iter_mut().zip(group) {
                *r = &t.tree;
            }
            if path_lengths_lanes(&refs[..group.len()], x, &mut h) {
                for (t, h) in group.iter().zip(h) {
                    sum += t.extend(x, h) / t.normaliser;
                }
            } else {
                group
                    .iter()
                    .for_each(|t| sum += t.path_length(x) / t.normaliser);
            }
        }
        (-sum / self.trees.len() as f64).exp2()
    }

    fn assess(&self, x: &[f64]) -> Option<Assessment> {
        if self.trees.is_empty() {
            return None;
        }
        let raw = self.raw_score(x);
        let a = self.params.smoothing_alpha;
        let smoothed = match self.smoothed {
            Some(s) => s + a * (raw - s),
            None => raw,
        };
        let (mean, std) = (self.smoothed_stats.mean(), self.smoothed_stats.std());
        let threshold = (mean + self.params.threshold_sigma * std).max(self.quantile_floor);
        let warm =
            self.smoothed_stats.len() >= self.params.batch_size.min(self.params.threshold_window);
        let candidate = warm && smoothed > threshold;
        let consecutive = if candidate { self.consecutive + 1 } else { 0 };
        Some(Assessment {
            raw,
            smoothed,
            mean,
            std,
            threshold,
            consecutive,
            is_anomaly: consecutive >= self.params.min_consecutive,
            warm,
        })
    }

    fn verdict(a: &Assessment) -> Option<Verdict> {
        a.warm.then_some(Verdict {
            score: a.smoothed,
            threshold: a.threshold,
            is_anomaly: a.is_anomaly,
        })
    }

    /// Learns a validated point whose assessment is `a`.
    fn learn(&mut self, x: &[f64], a: Option<Assessment>) {
        let d = x.len();
        if self.dims.is_none() {
            self.dims = Some(d);
            self.window = Vec::new();
        }
        if let Some(a) = a {
            self.smoothed = Some(a.smoothed);
            self.smoothed_stats.push(a.smoothed);
            self.consecutive = a.consecutive;
            // Once the buffer is full, the oldest entry's allocation takes the new point.
            let mut point = if self.recent.len() == self.params.batch_size {
                self.recent.pop_front().map(|r| r.point).unwrap_or_default()
            } else {
                Vec::with_capacity(x.len())
            };
            point.clear();
            point.extend_from_slice(x);
            self.recent.push_back(Recent {
                point,
                raw: a.raw,
                smoothed: a.smoothed,
            });
        }
        let slot = self.window_head * d;
        if slot == self.window.len() {
            // Still filling: the ring grows by one row.
            self.window.extend_from_slice(x);
        } else {
            self.window[slot..slot + d].copy_from_slice(x);
        }
        self.window_head = (self.window_head + 1) % self.params.window_size;
        self.window_len = (self.window_len + 1).min(self.params.window_size);
        self.seen += 1;
        self.since_refit += 1;
        if self.trees.is_empty() {
            if self.window_len >= self.params.warmup {
                for start in (0..self.params.n_estimators).step_by(GROUP) {
                    self.grow(start, GROUP.min(self.params.n_estimators - start));
                }
                self.since_refit = 0;
            }
        } else if self.since_refit >= self.params.batch_size {
            let per_batch = (self
                .params
                .n_estimators
                .saturating_mul(self.params.batch_size))
            .div_ceil(self.params.window_size)
            .clamp(1, self.params.n_estimators);
            self.earned += per_batch;
            self.regrow_earned();
            self.refresh_floor();
            self.since_refit = 0;
        }
    }

    /// Regrows the oldest group of trees (the slots from `next_replace` to the end of its group) for as long as the
    /// batches since the last regrowth have earned that many trees.
    fn regrow_earned(&mut self) {
        let n = self.params.n_estimators;
        loop {
            let start = self.next_replace;
            let len = (GROUP - start % GROUP).min(n - start);
            if self.earned < len {
                return;
            }
            self.earned -= len;
            self.grow(start, len);
            self.next_replace = (start + len) % n;
        }
    }

    /// Grows `count` trees on the window into the slots from `start` (all in one group), then rebuilds that
    /// group's step functions.
    fn grow(&mut self, start: usize, count: usize) {
        let m = self.window_len.min(MAX_TREE_SAMPLES);
        let max_depth = (m.max(2) as f64).log2().ceil() as u32;
        let d = self.dims.unwrap_or(1);
        let features: Vec<usize> = (0..d).collect();
        GROW_SCRATCH.with_borrow_mut(|scratch| {
            for slot in start..start + count {
                sample_rows(&mut self.rng, self.window_len, m, scratch);
                let GrowScratch {
                    rows,
                    keys,
                    sorted,
                    nodes,
                    ..
                } = scratch;
                let (lo, hi) = if d == 1 {
                    // One feature: grow on the sorted sample (the same tree, see `grow_tree_sorted`). A sample of
                    // the whole window (while it is shorter than a tree's sample) is sorted once for the group.
                    if m < self.window_len || slot == start {
                        sort_sample(rows.iter().map(|&r| self.window[r]), keys, sorted);
                    }
                    grow_tree_sorted(sorted, 0, max_depth, &mut self.rng, nodes);
                    (vec![sorted[0]], vec![sorted[sorted.len() - 1]])
                } else {
                    let view = ArrayView2::from_shape(
                        (self.window_len, d),
                        &self.window[..self.window_len * d],
                    )
                    .expect("window ring holds window_len rows");
                    *nodes = grow_tree(&view, rows, &features, max_depth, &mut self.rng);
                    let (mut lo, mut hi) = (vec![f64::INFINITY; d], vec![f64::NEG_INFINITY; d]);
                    for &r in rows.iter() {
                        for (j, &v) in view.row(r).iter().enumerate() {
                            lo[j] = lo[j].min(v);
                            hi[j] = hi[j].max(v);
                        }
                    }
                    (lo, hi)
                };
                // The tree replaced gives its buffers to the new one.
                let recycled = self.trees.take_tree(slot);
                let tree = WindowTree {
                    tree: Tree::from_grown_reusing(nodes, recycled),
                    normaliser: average_path_length(m as f64),
                    lo,
                    hi,
                };
                self.trees.put(slot, tree);
            }
        });
        if self.trees.len() == self.params.n_estimators {
            self.trees.refresh(start);
        } else {
            // A forest still filling (only a restored one: the first forest is grown whole) is walked until it is
            // complete, when `refresh` builds every group.
            self.trees.steps = None;
        }
    }

    fn refresh_floor(&mut self) {
        let mut recent: Vec<f64> = self.smoothed_stats.values().collect();
        if !recent.is_empty() {
            self.quantile_floor =
                percentile_select(&mut recent, 100.0 * (1.0 - self.params.contamination));
        }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        let p = &self.params;
        if p.clone().build().is_err() {
            return Err("invalid streaming forest parameters".into());
        }
        let d = self.dims.unwrap_or(0);
        // Rows the ring holds: it grows up to window_size rows (all of them at once in older snapshots), and while it
        // grows the next row is appended at its end.
        let rows = match self.dims {
            None if self.window.is_empty() && self.window_len == 0 && self.window_head == 0 => 0,
            Some(d) if d > 0 && self.window.len().is_multiple_of(d) => self.window.len() / d,
            _ => return Err("streaming forest window of inconsistent size".into()),
        };
        if rows > p.window_size
            || self.window_len > rows
            || self.window_head >= p.window_size
            || (rows < p.window_size && self.window_head != rows)
            || (!self.trees.is_empty() && self.window_len < p.warmup)
            || self.recent.len() > p.batch_size
            || self.trees.len() > p.n_estimators
            || (self.trees.is_empty() && self.next_replace != 0)
            || self.next_replace >= p.n_estimators
            || self.earned >= GROUP.min(p.n_estimators)
            || (self.trees.is_empty() && self.earned != 0)
        {
            return Err("streaming forest state of inconsistent size".into());
        }
        for t in self.trees.iter() {
            t.tree.check(d)?;
            if t.normaliser.is_nan() || t.normaliser <= 0.0 || t.lo.len() != d || t.hi.len() != d {
                return Err("invalid tree normaliser or box".into());
            }
        }
        if self.recent.iter().any(|r| r.point.len() != d) {
            return Err("buffered point of the wrong width".into());
        }
        self.smoothed_stats.check()
    }
}

impl StreamingDetector for StreamingIsolationForest {
    fn dims(&self) -> Option<usize> {
        self.dims
    }

    fn score(&self, x: &[f64]) -> Result<Option<Verdict>> {
        check_observation(self.dims, x)?;
        Ok(self.assess(x).as_ref().and_then(Self::verdict))
    }

    fn update(&mut self, x: &[f64]) -> Result<()> {
        check_observation(self.dims, x)?;
        let a = self.assess(x);
        self.learn(x, a);
        Ok(())
    }

    fn score_and_update(&mut self, x: &[f64]) -> Result<Option<Verdict>> {
        check_observation(self.dims, x)?;
        let a = self.assess(x);
        self.learn(x, a);
        Ok(a.as_ref().and_then(Self::verdict))
    }

    fn explain(&self, x: &[f64]) -> Result<Option<Explanation>> {
        check_observation(self.dims, x)?;
        let Some(a) = self.assess(x).filter(|a| a.warm) else {
            return Ok(None);
        };
        let mut credit = vec![0.0; x.len()];
        let trees: Vec<Tree> = self.trees.iter().map(|t| t.tree.clone()).collect();
        credit_splits(&trees, x, &mut credit);
        let typical = typical_ranges(&self.window_view(), self.params.seed);
        let attributions = rank_attributions(&credit, x, &typical, None);
        let lead = lead_features(&attributions);
        let candidate = a.consecutive > 0;
        let rationale = format!(
            "{}: smoothed score {} (raw {}) {} the adaptive threshold {} (rolling mean {} + {} × std {}){}{}.",
            if a.is_anomaly { "Anomalous" } else { "Normal" },
            fmt_num(a.smoothed),
            fmt_num(a.raw),
            if a.smoothed > a.threshold {
                "exceeds"
            } else {
                "does not exceed"
            },
            fmt_num(a.threshold),
            fmt_num(a.mean),
            fmt_num(self.params.threshold_sigma),
            fmt_num(a.std),
            if candidate {
                format!(
                    ", {} anomalous point(s) in a row ({} needed)",
                    a.consecutive, self.params.min_consecutive
                )
            } else {
                String::new()
            },
            lead,
        );
        Ok(Some(Explanation {
            score: a.smoothed,
            threshold: a.threshold,
            is_anomaly: a.is_anomaly,
            attributions,
            details: Details::StreamingIsolationForest {
                raw_score: a.raw,
                smoothed_score: a.smoothed,
                threshold_mean: a.mean,
                threshold_std: a.std,
                consecutive: a.consecutive,
                reported: a.is_anomaly,
                buffer: self.recent.iter().map(|r| r.point.clone()).collect(),
                raw_scores: self.recent.iter().map(|r| r.raw).collect(),
                smoothed_scores: self.recent.iter().map(|r| r.smoothed).collect(),
            },
            rationale,
        }))
    }
}

/// Buffers a refit reuses on a thread: the sample's rows, its sorted values and the grown nodes of a one-feature
/// tree.
#[derive(Default)]
struct GrowScratch {
    /// One bit per window row: drawn into the sample.
    picked: Vec<u64>,
    rows: Vec<usize>,
    keys: Vec<u64>,
    sorted: Vec<f64>,
    nodes: Vec<GrowNode>,
}

thread_local! {
    static GROW_SCRATCH: std::cell::RefCell<GrowScratch> = std::cell::RefCell::default();
}

/// Draws `m` of the `n` window rows uniformly without replacement into `scratch.rows`, in ascending order: Floyd's
/// algorithm over a bitmap (`m` draws, no allocation once the buffers have grown). All rows when `m >= n`.
fn sample_rows(rng: &mut ChaCha8Rng, n: usize, m: usize, scratch: &mut GrowScratch) {
    let GrowScratch { picked, rows, .. } = scratch;
    rows.clear();
    if m >= n {
        rows.extend(0..n);
        return;
    }
    picked.clear();
    picked.resize(n.div_ceil(64), 0);
    let pick = |picked: &mut [u64], r: usize| {
        let (word, bit) = (r / 64, 1u64 << (r % 64));
        let fresh = picked[word] & bit == 0;
        picked[word] |= bit;
        fresh
    };
    for j in n - m..n {
        let t = rng.random_range(0..=j);
        if !pick(picked, t) {
            pick(picked, j);
        }
    }
    for (w, &word) in picked.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            rows.push(w * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

/// Reads the threshold floor: `null` is the −∞ of a forest not yet refitted (JSON has no infinities).
fn floor_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

/// Serialises the generator as seed, stream and word position (split into two `u64`s: the snapshot format holds no
/// 128-bit integers).
mod rng_state {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct State {
        seed: [u8; 32],
        stream: u64,
        word_pos_hi: u64,
        word_pos_lo: u64,
    }

    pub(super) fn serialize<S: Serializer>(rng: &ChaCha8Rng, s: S) -> Result<S::Ok, S::Error> {
        let pos = rng.get_word_pos();
        State {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos_hi: (pos >> 64) as u64,
            word_pos_lo: pos as u64,
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChaCha8Rng, D::Error> {
        let state = State::deserialize(d)?;
        let mut rng = ChaCha8Rng::from_seed(state.seed);
        rng.set_stream(state.stream);
        rng.set_word_pos(((state.word_pos_hi as u128) << 64) | state.word_pos_lo as u128);
        Ok(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane walk gives each tree's path length exactly as a walk of that tree alone, for trees of several
    /// depths (grown while the window filled) and for one and several features.
    #[test]
    fn walking_trees_side_by_side_changes_no_score() {
        for dims in [1usize, 3] {
            let mut f = StreamingIsolationForestParams::new()
                .n_estimators(37)
                .build()
                .unwrap();
            let point = |i: usize| -> Vec<f64> {
                (0..dims)
                    .map(|j| ((i * 7 + j * 13) % 101) as f64 + (i as f64 * 0.37).sin())
                    .collect()
            };
            for i in 0..400 {
                f.score_and_update(&point(i)).unwrap();
            }
            let depths: std::collections::BTreeSet<u32> = f
                .trees
                .iter()
                .filter_map(|t| match &t.tree {
                    Tree::Dense { depth, .. } => Some(*depth),
                    Tree::Sparse { .. } => None,
                })
                .collect();
            assert!(depths.len() > 1, "trees of several depths: {depths:?}");
            let restored: StreamingIsolationForest =
                serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
            assert!(restored == f);
            for probe in [
                point(3),
                point(401),
                vec![-1e6; dims],
                vec![1e6; dims],
                vec![50.0; dims],
            ] {
                assert_eq!(
                    restored.raw_score(&probe),
                    f.raw_score(&probe),
                    "restored, probe {probe:?}"
                );
                let mut sum = 0.0;
                for t in f.trees.iter() {
                    sum += t.path_length(&probe) / t.normaliser;
                }
                let reference = (-sum / f.trees.len() as f64).exp2();
                assert_eq!(
                    f.walk_score(&probe),
                    reference,
                    "dims {dims}, probe {probe:?}"
                );
                assert_eq!(f.trees.steps.is_some(), dims == 1);
                let relative = (f.raw_score(&probe) - reference).abs() / reference;
                assert!(relative < 1e-12, "dims {dims}, probe {probe:?}: {relative}");
            }
        }
    }

    /// The snapshot, as JSON, of a forest of `params` after 300 points of a repeating ramp (its forest grown).
    fn saved_after_a_ramp(params: StreamingIsolationForestParams) -> serde_json::Value {
        let mut f = params.build().unwrap();
        for i in 0..300 {
            f.update(&[(i % 17) as f64]).unwrap();
        }
        serde_json::to_value(&f).unwrap()
    }

    /// Trees are regrown a group at a time, as soon as the batches since the last regrowth have earned the group's
    /// trees: with the defaults (50 trees, a batch of 20, a window of 1024) one tree per batch, so a group of 8 every
    /// 8 batches and the last group of 2 after 2 more; every tree is renewed once per 50 batches.
    #[test]
    fn trees_are_regrown_a_group_at_a_time_at_the_window_rate() {
        let mut f = StreamingIsolationForestParams::new().build().unwrap();
        let point = |i: usize| [((i * 37) % 101) as f64 + (i as f64 * 0.1).sin()];
        let mut i = 0;
        while f.trees.is_empty() {
            f.update(&point(i)).unwrap();
            i += 1;
        }
        assert_eq!(f.trees.len(), 50);
        // One tree earned per batch: group g is regrown once the batches cover it and every group before it.
        let groups: Vec<std::ops::Range<usize>> = (0..50)
            .step_by(GROUP)
            .map(|s| s..(s + GROUP).min(50))
            .collect();
        let mut schedule = std::collections::BTreeMap::new();
        let mut earned = 0;
        for group in groups.iter().cycle().take(3 * groups.len()) {
            earned += group.len();
            schedule.insert(earned, group.clone());
        }
        for batch in 1..=150 {
            let before = f.trees.list.clone();
            for _ in 0..20 {
                f.update(&point(i)).unwrap();
                i += 1;
            }
            let changed: Vec<usize> = (0..50).filter(|&s| before[s] != f.trees.list[s]).collect();
            let expected: Vec<usize> = schedule.get(&batch).cloned().unwrap_or_default().collect();
            assert_eq!(changed, expected, "batch {batch}");
            assert!(f.earned < GROUP);
            assert!(f.check().is_ok());
        }
        assert!(f.trees.steps.is_some());
    }

    /// A restored forest that is not complete (an edited snapshot: the first forest is always grown whole) scores
    /// as its trees walk while it fills, and gets its step functions back once complete.
    #[test]
    fn a_restored_forest_still_filling_scores_as_its_walk() {
        let mut json = saved_after_a_ramp(StreamingIsolationForestParams::new());
        json["trees"].as_array_mut().unwrap().truncate(10);
        json["next_replace"] = serde_json::json!(0);
        let mut partial: StreamingIsolationForest = serde_json::from_value(json).unwrap();
        assert!(partial.check().is_ok());
        for i in 0..2000 {
            partial.update(&[(i % 23) as f64 * 0.5]).unwrap();
            for x in [0.0, 3.3, 11.0, 40.0] {
                let (score, walk) = (partial.raw_score(&[x]), partial.walk_score(&[x]));
                assert!(
                    (score - walk).abs() <= 1e-12 * walk,
                    "point {i}, x {x}: {score} against {walk}"
                );
            }
        }
        assert_eq!(partial.trees.len(), 50);
        assert!(partial.trees.steps.is_some());
    }

    /// A detector saved before trees were regrown by groups (no `earned`, a replacement cursor inside a group)
    /// loads, and its next regrowth finishes the cursor's group, after which the groups line up.
    #[test]
    fn a_detector_saved_with_a_cursor_inside_a_group_realigns() {
        let mut json = saved_after_a_ramp(StreamingIsolationForestParams::new());
        json.as_object_mut().unwrap().remove("earned");
        json["next_replace"] = serde_json::json!(13);
        let mut old: StreamingIsolationForest = serde_json::from_value(json).unwrap();
        assert!(old.check().is_ok());
        assert_eq!(old.earned, 0);
        let before = old.trees.list.clone();
        for i in 0..60 {
            old.update(&[(i % 13) as f64]).unwrap();
        }
        let changed: Vec<usize> = (0..50)
            .filter(|&s| before[s] != old.trees.list[s])
            .collect();
        assert_eq!(changed, vec![13, 14, 15]);
        assert_eq!(old.next_replace, 16);
    }

    /// Scores through the step functions of a one-feature forest match the tree walk, across many tree
    /// replacements, at every kind of value: the window's own points, each tree's thresholds and box edges (where
    /// ties decide the side), between them, and far outside; with ties in the data and a constant stretch.
    #[test]
    fn step_functions_score_as_the_walk() {
        type Series = Box<dyn Fn(usize) -> f64>;
        let series: [(&str, Series); 4] = [
            ("smooth", Box::new(|i| (i as f64 * 0.1).sin() * 10.0 + 50.0)),
            ("integers", Box::new(|i| ((i * 7919) % 13) as f64)),
            (
                "constant then noisy",
                Box::new(|i| {
                    if i < 1500 {
                        3.0
                    } else {
                        ((i * 31) % 17) as f64
                    }
                }),
            ),
            (
                "spiky",
                Box::new(|i| {
                    if i % 97 == 0 {
                        1e9
                    } else {
                        (i % 10) as f64 * 1e-9
                    }
                }),
            ),
        ];
        for (name, value) in series {
            for n_estimators in [1, 10, 23, 50] {
                let mut f = StreamingIsolationForestParams::new()
                    .n_estimators(n_estimators)
                    .seed(n_estimators as u64)
                    .build()
                    .unwrap();
                for i in 0..2000 {
                    f.score_and_update(&[value(i)]).unwrap();
                    if i % 250 != 249 {
                        continue;
                    }
                    assert!(f.trees.steps.is_some(), "{name}: step functions built");
                    let mut probes: Vec<f64> = (0..40).map(|k| value(i - k)).collect();
                    for t in f.trees.iter() {
                        let (mut keys, mut values) = (Vec::new(), Vec::new());
                        assert!(t.tree.one_feature_steps(&mut keys, &mut values));
                        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{name}: sorted keys");
                        for k in keys.iter().take(8).chain([&t.lo[0], &t.hi[0]]) {
                            probes.extend([*k, k.next_down(), k.next_up()]);
                        }
                    }
                    probes.extend([-1e300, -1e6, 0.0, -0.0, 1e6, 1e300, f64::MIN, f64::MAX]);
                    for x in probes {
                        let (steps, walk) = (f.raw_score(&[x]), f.walk_score(&[x]));
                        assert!(
                            (steps - walk).abs() <= 1e-12 * walk,
                            "{name}, {n_estimators} trees, point {i}, x {x}: {steps} against {walk}"
                        );
                    }
                }
                let restored: StreamingIsolationForest =
                    serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
                assert!(restored.trees.steps.is_some(), "{name}: rebuilt on read");
                for i in 0..2000 {
                    let x = [value(i) * 1.01];
                    assert_eq!(restored.raw_score(&x), f.raw_score(&x), "{name}: restored");
                }
            }
        }
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Any series (ties, wide ranges, spikes) and any probe: the step functions give the walk's score.
        #[test]
        fn step_functions_match_the_walk_anywhere(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    (-1e6f64..1e6).boxed(),
                    (0u8..6).prop_map(f64::from).boxed(),
                    proptest::num::f64::NORMAL.boxed(),
                ],
                120..400,
            ),
            n_estimators in 1usize..40,
            probes in proptest::collection::vec(proptest::num::f64::NORMAL | proptest::num::f64::ZERO, 1..20),
        ) {
            let mut f = StreamingIsolationForestParams::new()
                .n_estimators(n_estimators)
                .batch_size(7)
                .build()
                .unwrap();
            for v in &values {
                f.update(&[*v]).unwrap();
            }
            proptest::prop_assert!(f.trees.steps.is_some());
            for x in probes.iter().chain(&values) {
                let (steps, walk) = (f.raw_score(&[*x]), f.walk_score(&[*x]));
                proptest::prop_assert!((steps - walk).abs() <= 1e-12 * walk, "x {}: {} against {}", x, steps, walk);
            }
        }
    }

    /// A tree that does not pass its check gets no step functions when read, and the detector's check refuses it.
    #[test]
    fn hostile_trees_get_no_step_functions() {
        let json = saved_after_a_ramp(StreamingIsolationForestParams::new());
        let mut deep = json.clone();
        deep["trees"][3]["tree"]["depth"] = serde_json::json!(40);
        let hostile: StreamingIsolationForest = serde_json::from_value(deep).unwrap();
        assert!(hostile.trees.steps.is_none());
        assert!(hostile.check().is_err());
        // Thresholds out of order pass the tree's check, but a step function would not score as its walk.
        let mut shuffled = json;
        let thresholds = shuffled["trees"][3]["tree"]["thresholds"]
            .as_array_mut()
            .unwrap();
        thresholds.swap(1, 2);
        let hostile: StreamingIsolationForest = serde_json::from_value(shuffled).unwrap();
        assert!(hostile.check().is_ok());
        assert!(hostile.trees.steps.is_none());
        // Real thresholds under a pass-through node: the walk still compares against them, so must the steps.
        let mut json = saved_after_a_ramp(StreamingIsolationForestParams::new().n_estimators(1));
        json["trees"][0]["tree"] = serde_json::json!({
            "layout": "dense", "depth": 2, "features": [0, 0, 0, 0],
            "thresholds": [f64::MAX, 8.5, f64::MAX, f64::MAX],
            "leaves": [1.0, 2.0, 3.0, 4.0], "counts": [0, 0, 0, 0, 0, 0, 0],
        });
        let odd: StreamingIsolationForest = serde_json::from_value(json).unwrap();
        assert!(odd.check().is_ok());
        for x in [0.0, 8.5, 9.0, 16.0] {
            let (steps, walk) = (odd.raw_score(&[x]), odd.walk_score(&[x]));
            assert!(
                (steps - walk).abs() <= 1e-12 * walk,
                "x {x}: {steps} against {walk}"
            );
        }
    }
}
