//! What every service of the project shares, so that each binary only parses, wires and answers:
//!
//! - [`ServeSettings`]: the common settings, from environment variables with typed, named errors ([`Env`]):
//!   `HOST` (default `127.0.0.1`), `PORT`, `MAX_REQUEST_BYTES`, `REQUEST_TIMEOUT_SECONDS`,
//!   `HEADER_TIMEOUT_SECONDS`, `SHUTDOWN_TIMEOUT_SECONDS`, `ALLOW_UNAUTHENTICATED`, `LOG_LEVEL`, `LOG_FORMAT`;
//! - [`Auth`]: a token compared in constant time, **required whenever a service listens beyond loopback**
//!   ([`ServeSettings::check_exposure`]); `/health` and `/ready` stay open, every other route needs it;
//! - [`app`]: the layers every router gets: request metrics per route, a request timeout, the body limit,
//!   authentication, and `/metrics` (Prometheus text or OpenMetrics, by the scraper's `Accept`);
//! - [`require_json`]: a 415 for a body that is not declared as JSON;
//! - [`serve`]: HTTP/1 with a header read timeout, until [`shutdown_signal`] (SIGTERM or SIGINT); in-flight
//!   requests finish, then the returned [`Deadline`] tells the service how long it has left to flush;
//! - [`Telemetry`]: the metric registry (`prometheus-client`) with the request-latency histogram;
//! - [`init_logging`]: `tracing` logs as text or JSON lines ([`init_logging_to_stderr`] for a command whose result
//!   goes to standard output);
//! - [`run_service`]: a service binary's `main` (configuration, logging, bind, serve, exit codes, a bounded exit);
//!   [`run_command`] for its one-shot commands (the result as JSON on standard output, logs on standard error);
//! - [`Webhook`]: JSON notifications to an outside URL, queued, cooled down per key, retried, drained at shutdown;
//!   [`slack_text`] and [`slack_escape`] for Slack-format messages.

mod auth;
mod env;
mod error;
mod http;
mod logging;
mod run;
mod serve;
mod settings;
mod sign_in;
mod telemetry;
pub mod testing;
mod webhook;

pub use auth::Auth;
pub use env::Env;
pub use error::KitError;
pub use http::{app, error_response, ready_response, require_json};
pub use logging::{init_logging, init_logging_to_stderr};
pub use run::{run_command, run_service};
pub use serve::{Deadline, serve, shutdown_signal};
pub use settings::{LogFormat, ServeSettings};
pub use telemetry::Telemetry;
pub use webhook::{
    Webhook, WebhookOutcome, WebhookSettings, WebhookTask, slack_escape, slack_text,
};

/// The metric library, for services that register their own metrics in [`Telemetry::registry`].
pub use prometheus_client;
