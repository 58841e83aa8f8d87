//! [`init_logging`]: the process's `tracing` subscriber.

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, ServeSettings};

/// Installs the subscriber `LOG_LEVEL` and `LOG_FORMAT` describe (an unusable filter falls back to `info`, and
/// says so). Call once, first thing in `main`; a second call does nothing.
pub fn init_logging(settings: &ServeSettings) {
    let (filter, bad) = match EnvFilter::try_new(&settings.log_level) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if installed.is_ok()
        && let Some(e) = bad
    {
        tracing::warn!(log_level = %settings.log_level, error = %e, "LOG_LEVEL is not a valid filter; using info");
    }
}
