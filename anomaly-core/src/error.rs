//! The crate's one error type.

/// Everything that can go wrong in `anomaly-core`.
///
/// Every variant carries the offending values so a caller can report them without parsing the message. No function
/// of this crate panics on user input; it returns one of these instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is outside its documented domain.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name, as spelled in the builder.
        name: &'static str,
        /// Why the value was rejected.
        reason: String,
    },
    /// The input has a different number of features than the model was fitted on.
    #[error("dimension mismatch: expected {expected} features, got {got}")]
    DimensionMismatch {
        /// Number of features the model expects.
        expected: usize,
        /// Number of features supplied.
        got: usize,
    },
    /// Too few samples to fit.
    #[error("not enough samples: need at least {needed}, got {got}")]
    NotEnoughSamples {
        /// Minimum number of samples needed.
        needed: usize,
        /// Number of samples supplied.
        got: usize,
    },
    /// A NaN or infinite value in the input.
    #[error("non-finite value {value} at row {row}, column {column}")]
    NonFinite {
        /// Zero-based row index.
        row: usize,
        /// Zero-based column index.
        column: usize,
        /// The offending value (NaN or ±inf).
        value: f64,
    },
    /// The input has no rows or no columns.
    #[error("empty input: {what}")]
    EmptyInput {
        /// What was empty.
        what: &'static str,
    },
    /// Snapshot bytes that cannot be restored: corrupt, another format, or an unknown version.
    #[error("unsupported snapshot: {reason}")]
    UnsupportedSnapshot {
        /// Why the snapshot was refused.
        reason: String,
    },
    /// A record that cannot be vectorised: not a JSON object, nested too deeply, or with too many fields.
    #[error("invalid record: {reason}")]
    InvalidRecord {
        /// What is wrong with the record.
        reason: String,
    },
    /// The engine's persistence layer failed (the store is unreachable, a transaction failed, …): the same
    /// call may succeed later.
    #[error("persistence failed: {reason}")]
    Persistence {
        /// What failed, as the persistence layer reported it.
        reason: String,
    },
    /// The persistence layer refused the data as invalid (a key too long for its column, a character the
    /// database cannot store): the same call will fail again, however often it is retried.
    #[error("persistence refused the data: {reason}")]
    PersistenceRefused {
        /// Why, as the persistence layer reported it.
        reason: String,
    },
    /// A table (CSV, JSON lines, Parquet) that cannot be read: which file, where in it, and why.
    #[error("{file}: {reason}")]
    Table {
        /// The file, as given.
        file: String,
        /// What is wrong, and where (`line 17: …`, `row 4: …`).
        reason: String,
    },
}

/// Shorthand for `Result<T, anomaly_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}
