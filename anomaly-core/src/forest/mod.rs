//! Isolation forest (Liu, Ting & Zhou, ICDM 2008) with scikit-learn 1.9's definitions.
//!
//! [`IsolationForestParams`] holds the unfitted parameters; [`IsolationForestParams::fit`] grows the trees in
//! parallel and returns an immutable [`IsolationForest`].

mod grow;
mod model;
mod parallel;
mod params;
mod path_length;
mod quantile;
mod ranked;
// The workspace denies `unsafe`; this module is the one exception (SIMD gathers; its docs say why and how).
#[allow(unsafe_code)]
mod simd;
mod sparse;
mod tree;
mod weights;

pub(crate) use grow::{GrowNode, grow_tree, grow_tree_sorted, sort_sample};
pub use model::IsolationForest;
pub(crate) use model::{credit_splits, lead_features, rank_attributions, typical_ranges};
pub use parallel::on_threads;
pub use params::{
    Contamination, IsolationForestParams, MAX_ESTIMATORS, MAX_THREADS, MaxFeatures, MaxSamples,
};
pub use path_length::average_path_length;
pub(crate) use quantile::{percentile, percentile_select, percentile_sorted};
pub use sparse::{CsrMatrix, MAX_SPARSE_COLUMNS};
pub(crate) use tree::{LANES, Tree, path_lengths_lanes};
