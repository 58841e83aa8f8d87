//! The service's one error type.

/// What can stop the analyzer from starting, running or finishing a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyzerError {
    /// An environment variable holds an unusable value, or the service would listen beyond loopback without a
    /// token.
    #[error(transparent)]
    Config(#[from] service_kit::KitError),
    /// A detector setting, or the stored state, is refused by the library.
    #[error("log detector: {0}")]
    Detector(#[from] anomaly_core::Error),
    /// The database cannot be opened or written.
    #[error("database: {0}")]
    Store(#[from] anomaly_store::StoreError),
    /// The LLM settings are unusable.
    #[error("second opinion: {0}")]
    Llm(#[from] anomaly_llm::LlmError),
    /// A file cannot be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}
