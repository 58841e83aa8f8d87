//! Time windows: from event records to one row per service per window (the service-monitor case).
//!
//! Events are JSON objects with a service, a timestamp and optionally a latency and a status (field names set in
//! [`WindowParams`]). Each service's events are grouped into fixed windows `[k·width, (k + 1)·width)` of event
//! time, and each window becomes a [`WindowRow`]: count, error and client-error rates, latency quantiles, maximum
//! and mean, the calendar position of the window, the mean of every other numeric field, and for each category
//! field (an endpoint, a method) the share of events whose value the service never showed before. [`WindowRow::to_json`] gives the
//! flat record the record vectoriser and the detectors take.
//!
//! - [`aggregate`] does a whole batch at once, in any order.
//! - [`WindowAggregator`] does a stream: each [`push`](WindowAggregator::push) returns the windows the event-time
//!   watermark has closed, late events are counted, and [`flush`](WindowAggregator::flush) closes the rest. Fed
//!   the same events in the same order, none of them late, it returns exactly the rows [`aggregate`] returns.
//!
//! Counts, error rates and latency statistics do not depend on the order of the events within a window; the means
//! of extra fields are running means, which may differ in their last bits when the order changes.
//!
//! Windows without events between a service's first event and the newest window produce rows with `count` 0, so a
//! service that falls silent is seen as such rather than as missing data.
//!
//! ```
//! use anomaly_core::window::{aggregate, WindowParams};
//! use serde_json::json;
//!
//! let events = [
//!     json!({"service": "api", "timestamp": "2024-01-01T00:00:05Z", "status": 200, "response_time_ms": 10, "bytes": 100}),
//!     json!({"service": "api", "timestamp": "2024-01-01T00:00:30Z", "status": 500, "response_time_ms": 30, "bytes": 300}),
//!     json!({"service": "api", "timestamp": "2024-01-01T00:02:00Z", "status": 200, "response_time_ms": 20}),
//! ];
//! let rows = aggregate(&WindowParams::new(), &events)?;
//! assert_eq!(rows.iter().map(|r| r.count).collect::<Vec<_>>(), [2, 0, 1]);
//! assert_eq!(rows[0].error_rate, Some(0.5));
//! assert_eq!(rows[0].latency_p50, Some(20.0));
//! assert_eq!(rows[0].extra["bytes"], 200.0);
//! assert_eq!(rows[0].to_json()["window_start"], "2024-01-01T00:00:00.000Z");
//! # Ok::<(), anomaly_core::Error>(())
//! ```

mod accumulate;
mod aggregator;
mod extract;
mod params;
mod row;
mod vocabulary;

use serde_json::Value;

pub use aggregator::{Vocabularies, WindowAggregator};
pub use params::WindowParams;
pub use row::WindowRow;

use crate::error::{Error, Result};

/// Aggregates a batch of events, in any order, into rows sorted by `(window_start, service)`.
///
/// Every event counts, whatever its order: lateness does not apply to a batch. Each service has a row for every
/// window from its first event's window to the newest window of any service (rows with `count` 0 where it had no
/// event).
///
/// # Errors
/// [`Error::InvalidParameter`] if `params` fail [`WindowParams::validate`]; [`Error::InvalidRecord`] for the first
/// event that [`WindowAggregator::push`] would refuse, its position prefixed to the reason (`event 3: missing
/// field ...`).
pub fn aggregate(params: &WindowParams, events: &[Value]) -> Result<Vec<WindowRow>> {
    let mut windows = WindowAggregator::batch(params.clone())?;
    for (i, event) in events.iter().enumerate() {
        windows.push(event).map_err(|e| match e {
            Error::InvalidRecord { reason } => Error::InvalidRecord {
                reason: format!("event {i}: {reason}"),
            },
            other => other,
        })?;
    }
    Ok(windows.flush())
}

#[cfg(test)]
mod tests;
