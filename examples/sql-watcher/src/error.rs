//! The crate's one error type.

use service_kit::KitError;

/// What can go wrong in the application.
#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    /// A setting is unusable.
    #[error("{variable}: {reason}")]
    Config {
        /// The environment variable or option.
        variable: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The application's own database failed.
    #[error("the application's database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The engine's store failed.
    #[error("the engine's store: {0}")]
    Store(#[from] anomaly_store::StoreError),
    /// The engine refused a call.
    #[error("the engine: {0}")]
    Engine(#[from] anomaly_core::Error),
    /// Input a user sent is unusable; `field` names it (as the API's JSON field).
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A user name is taken.
    #[error("the user name {0:?} is taken")]
    UsernameTaken(String),
    /// A data source's run could not happen or failed (the reason is also kept on the source).
    #[error("{0}")]
    Source(String),
    /// A run of this source is already under way.
    #[error("a fetch of this data source is already running")]
    Busy,
    /// Reading or writing a file, or a terminal.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl From<KitError> for WatcherError {
    fn from(e: KitError) -> Self {
        match e {
            KitError::Config { variable, reason } => WatcherError::Config { variable, reason },
            other => WatcherError::Config {
                variable: "service".into(),
                reason: other.to_string(),
            },
        }
    }
}

impl WatcherError {
    /// An [`Invalid`](WatcherError::Invalid) error.
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        WatcherError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
