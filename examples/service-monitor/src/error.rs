//! The monitor's one error type.

/// What can stop a command of the monitor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// An environment variable or an argument holds an unusable value, or the service would listen beyond
    /// loopback without a token.
    #[error(transparent)]
    Config(#[from] service_kit::KitError),
    /// Elasticsearch (or OpenSearch) refused a request or could not be reached, after the retries the API allows.
    #[error("Elasticsearch: {0}")]
    Elastic(Box<crate::elastic::ElasticError>),
    /// The engine, the windows or the generator refused their input or parameters.
    #[error(transparent)]
    Engine(#[from] anomaly_core::Error),
    /// The database cannot be opened, read or written.
    #[error("database: {0}")]
    Store(#[from] anomaly_store::StoreError),
    /// A file cannot be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// An input event is not what the monitor reads (with `--strict`; otherwise such events are counted and
    /// skipped).
    #[error("{place}: {reason}")]
    BadEvent {
        /// Where: `events.ndjson line 12`, or an index and document id.
        place: String,
        /// Why.
        reason: String,
    },
    /// A chart could not be drawn or written.
    #[error("chart {path}: {reason}")]
    Chart {
        /// The PNG file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl From<crate::elastic::ElasticError> for MonitorError {
    fn from(e: crate::elastic::ElasticError) -> Self {
        MonitorError::Elastic(Box::new(e))
    }
}

impl MonitorError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        MonitorError::Io {
            what: what.into(),
            source,
        }
    }
}

/// The monitor's results.
pub type Result<T, E = MonitorError> = std::result::Result<T, E>;
