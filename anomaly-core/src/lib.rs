#![doc = include_str!("../README.md")]

pub mod alert;
pub mod drift;
pub mod engine;
mod error;
mod explanation;
pub mod forest;
pub mod logs;
pub mod metrics;
pub mod records;
pub mod snapshot;
pub mod stats;
pub mod stream;
pub mod synth;
#[cfg(feature = "table")]
pub mod table;
mod validate;
pub mod window;

pub use alert::{AlertRule, AlertState};
pub use error::{Error, Result};
pub use explanation::{Attribution, Details, Explanation, ThresholdRule, Verdict};
pub use forest::{
    Contamination, CsrMatrix, IsolationForest, IsolationForestParams, MaxFeatures, MaxSamples,
};
pub use snapshot::{Model, Snapshot};
pub use stream::{
    Ema, EmaParams, MovingAverage, MovingAverageParams, StreamingDetector,
    StreamingIsolationForest, StreamingIsolationForestParams,
};

/// The workspace README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadme;
