//! The kit's one error type.

use std::net::SocketAddr;

/// What can stop a service from starting or serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KitError {
    /// An environment variable holds an unusable value.
    #[error("configuration: {variable}: {reason}")]
    Config {
        /// The variable.
        variable: String,
        /// Why its value is refused.
        reason: String,
    },
    /// The service would listen beyond loopback with no authentication.
    #[error(
        "refusing to listen on {host} without authentication: set {how} (or listen on 127.0.0.1, or set \
         ALLOW_UNAUTHENTICATED=true to serve anyone who can reach the port)"
    )]
    Unauthenticated {
        /// The `HOST` asked for.
        host: String,
        /// The variable that sets the service's credentials.
        how: String,
    },
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl KitError {
    pub(crate) fn config(variable: &str, reason: impl Into<String>) -> Self {
        KitError::Config {
            variable: variable.into(),
            reason: reason.into(),
        }
    }
}
