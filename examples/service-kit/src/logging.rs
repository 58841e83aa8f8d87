//! [`init_logging`]: the process's `tracing` subscriber.

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, ServeSettings};

/// Installs the subscriber `LOG_LEVEL` and `LOG_FORMAT` describe, writing to standard output (an unusable filter
/// falls back to `info`, and says so). Call once, first thing in `main`; a second call does nothing.
pub fn init_logging(settings: &ServeSettings) {
    install(settings, false);
}

/// As [`init_logging`], writing to standard error: for a command that prints its result on standard output.
pub fn init_logging_to_stderr(settings: &ServeSettings) {
    install(settings, true);
}

fn install(settings: &ServeSettings, stderr: bool) {
    let (filter, bad) = match EnvFilter::try_new(&settings.log_level) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match (settings.log_format, stderr) {
        (LogFormat::Text, false) => builder.try_init(),
        (LogFormat::Json, false) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Text, true) => builder.with_writer(std::io::stderr).try_init(),
        (LogFormat::Json, true) => builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .try_init(),
    };
    if installed.is_ok()
        && let Some(e) = bad
    {
        tracing::warn!(log_level = %settings.log_level, error = %e, "LOG_LEVEL is not a valid filter; using info");
    }
}
