//! Helpers of the `detect` example: reading tables (CSV, JSON lines, Parquet, `.npy`) and labels with precise errors,
//! scanning a table of any length in bounded memory ([`scan`]), writing per-row results ([`output`]), the bundled
//! ADBench "cardio" sample, ROC-AUC, and the JSON report.
//!
//! The detection itself is `anomaly_core`'s isolation forest; this crate only feeds it data and reports on it.
//!
//! Rows are numbered from 1 in every message, counting data rows only (a CSV header row is not counted), so
//! "row 17" is the 17th line of a labels file and the 17th line of a `--scores` file.

pub mod args;
pub mod bundled;
mod error;
pub mod input;
pub mod metrics;
pub mod output;
pub mod report;
pub mod scan;

pub use error::DetectError;
pub use input::{Dataset, read_input, read_labels};
pub use metrics::roc_auc;
pub use report::{Report, top_rows};
