//! The worker's one error type.

/// What can stop the worker from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// An environment variable holds an unusable value, or the service would listen beyond loopback without a
    /// token.
    #[error(transparent)]
    Config(#[from] service_kit::KitError),
    /// A detector setting is refused by the library.
    #[error("detector settings: {0}")]
    Detector(#[from] anomaly_core::Error),
    /// The NATS server cannot be reached, or refused to set up the stream or the consumer.
    #[error("NATS ({url}): {reason}")]
    Nats {
        /// `NATS_URL`.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The database cannot be opened.
    #[error("database: {0}")]
    Store(#[from] anomaly_store::StoreError),
    /// A file or directory the worker needs cannot be created.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl WorkerError {
    pub(crate) fn nats(url: &str, reason: impl std::fmt::Display) -> Self {
        WorkerError::Nats {
            url: url.into(),
            reason: reason.to_string(),
        }
    }
}
