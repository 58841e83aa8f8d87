//! Parameters of the windowing: widths, lateness and which fields mean what.

use serde::{Deserialize, Serialize};

use super::WindowAggregator;
use crate::error::{Error, Result};

/// The narrowest window: one millisecond.
const MIN_WIDTH: f64 = 1e-3;

/// Parameters of [`aggregate`](super::aggregate) and [`WindowAggregator`].
///
/// | parameter | default | meaning |
/// | --- | --- | --- |
/// | `width_seconds` | 60 | window width; windows are `[k·width, (k + 1)·width)` in epoch seconds |
/// | `allowed_lateness_seconds` | 0 | how far behind the newest timestamp an event may arrive and still count (streaming only) |
/// | `service_field` | `service` | field naming the service (a non-empty string) |
/// | `timestamp_field` | `timestamp` | field with the event time: epoch seconds (a number or numeric string) or a date/time string |
/// | `latency_field` | `response_time_ms` | field with the latency (a number or numeric string); optional per event |
/// | `status_field` | `status` | field with the status code (a number or numeric string); optional per event |
/// | `error_status_at_least` | 500 | an event is an error when its status is at least this |
/// | `extra_fields` | every other numeric field | fields whose per-window mean goes in [`WindowRow::extra`](super::WindowRow::extra) |
/// | `max_span_windows` | 100 000 | most windows that may be open at once, from the oldest not yet emitted to the newest seen |
/// | `max_services` | 10 000 | services tracked; events of further services are refused |
/// | `category_fields` | none | fields whose new values are measured: [`WindowRow::new_value_share`](super::WindowRow::new_value_share) |
/// | `max_category_values` | 1 000 | values remembered per category field and service; once full, further values count as seen |
/// | `new_value_windows` | 1 | windows, from its first, in which a value counts as new |
/// | `new_value_warmup_windows` | 1 | a service's first windows with events, which only learn its values |
///
/// Field names are dotted paths into nested objects (`http.status` finds `{"http": {"status": 503}}`); a key that
/// itself contains the dots is found too. The span limit keeps one absurd timestamp (a year 9999 typo) from
/// producing millions of empty rows; widen it for long gaps in data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowParams {
    pub(super) width_seconds: f64,
    pub(super) allowed_lateness_seconds: f64,
    pub(super) service_field: String,
    pub(super) timestamp_field: String,
    pub(super) latency_field: String,
    pub(super) status_field: String,
    pub(super) error_status_at_least: f64,
    pub(super) extra_fields: Option<Vec<String>>,
    pub(super) max_span_windows: u64,
    #[serde(default = "default_max_services")]
    pub(super) max_services: usize,
    #[serde(default)]
    pub(super) category_fields: Vec<String>,
    #[serde(default = "default_max_category_values")]
    pub(super) max_category_values: usize,
    #[serde(default = "default_new_value_windows")]
    pub(super) new_value_windows: u64,
    #[serde(default = "default_new_value_windows")]
    pub(super) new_value_warmup_windows: u64,
}

fn default_new_value_windows() -> u64 {
    1
}

fn default_max_services() -> usize {
    10_000
}

fn default_max_category_values() -> usize {
    1_000
}

impl Default for WindowParams {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowParams {
    /// The defaults in the table above.
    pub fn new() -> Self {
        WindowParams {
            width_seconds: 60.0,
            allowed_lateness_seconds: 0.0,
            service_field: "service".into(),
            timestamp_field: "timestamp".into(),
            latency_field: "response_time_ms".into(),
            status_field: "status".into(),
            error_status_at_least: 500.0,
            extra_fields: None,
            max_span_windows: 100_000,
            max_services: default_max_services(),
            category_fields: Vec::new(),
            max_category_values: default_max_category_values(),
            new_value_windows: default_new_value_windows(),
            new_value_warmup_windows: default_new_value_windows(),
        }
    }

    /// Window width in seconds, at least 0.001 (default 60).
    pub fn width_seconds(mut self, seconds: f64) -> Self {
        self.width_seconds = seconds;
        self
    }

    /// How far behind the newest timestamp an event may arrive and still be counted, in seconds, finite and
    /// non-negative (default 0: any event older than a closed window is late).
    pub fn allowed_lateness_seconds(mut self, seconds: f64) -> Self {
        self.allowed_lateness_seconds = seconds;
        self
    }

    /// Field naming the service (default `service`).
    pub fn service_field(mut self, field: impl Into<String>) -> Self {
        self.service_field = field.into();
        self
    }

    /// Field with the event time (default `timestamp`).
    pub fn timestamp_field(mut self, field: impl Into<String>) -> Self {
        self.timestamp_field = field.into();
        self
    }

    /// Field with the latency (default `response_time_ms`).
    pub fn latency_field(mut self, field: impl Into<String>) -> Self {
        self.latency_field = field.into();
        self
    }

    /// Field with the status code (default `status`).
    pub fn status_field(mut self, field: impl Into<String>) -> Self {
        self.status_field = field.into();
        self
    }

    /// Statuses at least this count as errors (default 500: the 5xx family).
    pub fn error_status_at_least(mut self, status: f64) -> Self {
        self.error_status_at_least = status;
        self
    }

    /// Only these fields are averaged into [`WindowRow::extra`](super::WindowRow::extra) (default: every numeric
    /// field other than the timestamp, latency and status, including the summaries of numeric arrays that
    /// [`flatten`](crate::records::flatten) produces). An empty list averages nothing.
    pub fn extra_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_fields = Some(fields.into_iter().map(Into::into).collect());
        self
    }

    /// Most windows open at once (default 100,000; at least 1).
    pub fn max_span_windows(mut self, windows: u64) -> Self {
        self.max_span_windows = windows;
        self
    }

    /// Services tracked at once (default 10,000; at least 1): each has a row every window from its first event
    /// on, and its vocabulary; an event of a service beyond the bound is refused, so a wrong service field (a
    /// request id) cannot fill memory.
    pub fn max_services(mut self, n: usize) -> Self {
        self.max_services = n;
        self
    }

    /// Category fields (an endpoint, a method) whose values each service's windows track (default none): each row
    /// gets the share of its events whose value the service had not shown in an earlier window. A service's first
    /// window with events starts its vocabulary (share 0). Values are strings, or numbers and booleans as written.
    pub fn category_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.category_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Values remembered per category field and service (default 1,000; at least 1). Once a field's vocabulary is
    /// full, values outside it count as seen: a field of unbounded values (a URL with ids in it) stops counting
    /// as new rather than flagging every window.
    pub fn max_category_values(mut self, n: usize) -> Self {
        self.max_category_values = n;
        self
    }

    /// Windows in which a value counts as new: the window it first appears in and the `n - 1` after it (default
    /// 1; at least 1). More than one lets a rule that waits for several anomalous windows in a row see a new
    /// value that stays.
    pub fn new_value_windows(mut self, n: u64) -> Self {
        self.new_value_windows = n;
        self
    }

    /// A service's first `n` windows with events only learn its values: their shares of new values are 0 (default
    /// 1; at least 1). Over a few windows, a value that is merely rare has shown up too, and is not taken for new
    /// later.
    pub fn new_value_warmup_windows(mut self, n: u64) -> Self {
        self.new_value_warmup_windows = n;
        self
    }

    /// The window width in seconds.
    pub fn width(&self) -> f64 {
        self.width_seconds
    }

    /// The allowed lateness in seconds.
    pub fn lateness(&self) -> f64 {
        self.allowed_lateness_seconds
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a width below 0.001 s or not finite, a negative or non-finite lateness, an
    /// empty field name, a non-finite error status, or a span limit of 0.
    pub fn validate(&self) -> Result<()> {
        if !(self.width_seconds.is_finite() && self.width_seconds >= MIN_WIDTH) {
            return Err(Error::invalid(
                "width_seconds",
                format!(
                    "must be finite and at least {MIN_WIDTH}, got {}",
                    self.width_seconds
                ),
            ));
        }
        if !(self.allowed_lateness_seconds.is_finite() && self.allowed_lateness_seconds >= 0.0) {
            return Err(Error::invalid(
                "allowed_lateness_seconds",
                format!(
                    "must be finite and non-negative, got {}",
                    self.allowed_lateness_seconds
                ),
            ));
        }
        for (name, field) in [
            ("service_field", &self.service_field),
            ("timestamp_field", &self.timestamp_field),
            ("latency_field", &self.latency_field),
            ("status_field", &self.status_field),
        ] {
            if field.is_empty() {
                return Err(Error::invalid(name, "must not be empty"));
            }
        }
        if self.category_fields.iter().any(String::is_empty) {
            return Err(Error::invalid(
                "category_fields",
                "field names must not be empty",
            ));
        }
        if self.max_services == 0 {
            return Err(Error::invalid("max_services", "must be at least 1"));
        }
        if self.new_value_warmup_windows == 0 {
            return Err(Error::invalid(
                "new_value_warmup_windows",
                "must be at least 1",
            ));
        }
        if self.new_value_windows == 0 {
            return Err(Error::invalid("new_value_windows", "must be at least 1"));
        }
        if self.max_category_values == 0 {
            return Err(Error::invalid("max_category_values", "must be at least 1"));
        }
        if self.extra_fields.iter().flatten().any(String::is_empty) {
            return Err(Error::invalid(
                "extra_fields",
                "field names must not be empty",
            ));
        }
        if !self.error_status_at_least.is_finite() {
            return Err(Error::invalid(
                "error_status_at_least",
                format!("must be finite, got {}", self.error_status_at_least),
            ));
        }
        if self.max_span_windows == 0 {
            return Err(Error::invalid("max_span_windows", "must be at least 1"));
        }
        Ok(())
    }

    /// Checks the parameters and builds an empty streaming aggregator.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn build(self) -> Result<WindowAggregator> {
        WindowAggregator::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_named() {
        let p = WindowParams::new;
        p().validate().unwrap();
        let cases = [
            (p().width_seconds(0.0), "width_seconds"),
            (p().width_seconds(f64::NAN), "width_seconds"),
            (
                p().allowed_lateness_seconds(-1.0),
                "allowed_lateness_seconds",
            ),
            (
                p().allowed_lateness_seconds(f64::INFINITY),
                "allowed_lateness_seconds",
            ),
            (p().service_field(""), "service_field"),
            (p().timestamp_field(""), "timestamp_field"),
            (p().latency_field(""), "latency_field"),
            (p().status_field(""), "status_field"),
            (p().extra_fields([""]), "extra_fields"),
            (p().error_status_at_least(f64::NAN), "error_status_at_least"),
            (p().max_span_windows(0), "max_span_windows"),
            (p().category_fields([""]), "category_fields"),
            (p().max_category_values(0), "max_category_values"),
            (p().new_value_windows(0), "new_value_windows"),
            (p().max_services(0), "max_services"),
            (p().new_value_warmup_windows(0), "new_value_warmup_windows"),
        ];
        for (params, expected) in cases {
            match params.build() {
                Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, expected),
                other => panic!("{expected}: {other:?}"),
            }
        }
    }
}
