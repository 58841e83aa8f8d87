//! What the monitor reads from an API log event, and the record each window becomes for the engine.

use anomaly_core::records::role::{FieldRole, FieldRoles};
use anomaly_core::window::{WindowParams, WindowRow};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::Config;

/// The names of the event fields the monitor reads (dotted paths reach into nested objects: `http.status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fields {
    /// The event time: an RFC 3339 date/time or epoch seconds.
    pub timestamp: String,
    /// The service that answered.
    pub service: String,
    /// The endpoint called (new endpoints are measured).
    pub endpoint: String,
    /// The HTTP method (new methods are measured).
    pub method: String,
    /// The HTTP status: 5xx counts as an error of the service, 4xx as a client error.
    pub status: String,
    /// The response time in milliseconds.
    pub latency: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            timestamp: "@timestamp".into(),
            service: "service".into(),
            endpoint: "endpoint".into(),
            method: "method".into(),
            status: "status".into(),
            latency: "response_time_ms".into(),
        }
    }
}

/// The windowing the monitor does: per service and `WINDOW_SECONDS`, the error rates, latency quantiles, and the
/// share of new endpoints and methods; no other field is averaged.
pub fn window_params(config: &Config) -> WindowParams {
    let f = &config.fields;
    WindowParams::new()
        .width_seconds(config.window_seconds as f64)
        .allowed_lateness_seconds(config.lateness_seconds as f64)
        .service_field(&f.service)
        .timestamp_field(&f.timestamp)
        .latency_field(&f.latency)
        .status_field(&f.status)
        .extra_fields(Vec::<String>::new())
        .category_fields([f.endpoint.clone(), f.method.clone()])
        .new_value_windows(config.new_value_windows)
        // An hour of windows learns a service's endpoints before any is new: a rare one has shown up by then.
        .new_value_warmup_windows((3_600 / config.window_seconds).max(1))
        .max_span_windows(max_span_windows(config))
        .max_services(config.max_services)
}

/// Windows open at once: a backlog's worth, and a day more for events out of order (a longer gap in the data is
/// crossed a part at a time: see [`EventWindows`](crate::pipeline::EventWindows)).
pub fn max_span_windows(config: &Config) -> u64 {
    (config.max_backlog_seconds + 86_400) / config.window_seconds + 1
}

/// The record the engine scores for one window: request count, error and client-error rates, latency p50, p95
/// and p99, the share of new endpoints and methods, and the window's hour of day on the unit circle; with
/// `weekday`, its day of week too. The day of week only helps a model trained on a week or more: over a day or two
/// of training, it would make every hour of a new day look unseen.
pub fn window_record(row: &WindowRow, fields: &Fields, weekday: bool) -> Value {
    let mut map = Map::new();
    map.insert("count".into(), json!(row.count));
    for (name, v) in [
        ("error_rate", row.error_rate),
        ("client_error_rate", row.client_error_rate),
        ("latency_p50", row.latency_p50),
        ("latency_p95", row.latency_p95),
        ("latency_p99", row.latency_p99),
    ] {
        map.insert(name.into(), json!(v));
    }
    for (field, name) in [
        (&fields.endpoint, "new_endpoint_share"),
        (&fields.method, "new_method_share"),
    ] {
        let share = row.new_value_share.get(field).copied().unwrap_or(0.0);
        map.insert(name.into(), json!(share));
    }
    map.insert("hour_sin".into(), json!(row.hour_sin));
    map.insert("hour_cos".into(), json!(row.hour_cos));
    if weekday {
        map.insert("weekday_sin".into(), json!(row.weekday_sin));
        map.insert("weekday_cos".into(), json!(row.weekday_cos));
    }
    Value::Object(map)
}

/// An event's time in epoch seconds: `field` (a dotted path into nested objects, or a key holding the dots) as an
/// RFC 3339 date/time, or epoch seconds as a number or numeric string.
pub fn event_time(event: &Value, field: &str) -> Option<f64> {
    match lookup(event, field)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => anomaly_core::records::kind::parse_moment(s)
            .map(|m| m.epoch_seconds)
            .or_else(|| s.parse().ok()),
        _ => None,
    }
}

/// A dotted path into nested objects (`http.status`), or a key holding the dots.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = value.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    lookup(value.get(head)?, rest)
}

/// Every field of a window's record is a measurement: pinned, so that a share that is always 0 in training (no new
/// endpoint) is not taken for a category, and stays under the range rule.
pub fn record_roles() -> FieldRoles {
    [
        "count",
        "error_rate",
        "client_error_rate",
        "latency_p50",
        "latency_p95",
        "latency_p99",
        "new_endpoint_share",
        "new_method_share",
        "hour_sin",
        "hour_cos",
        "weekday_sin",
        "weekday_cos",
    ]
    .into_iter()
    .map(|f| (f.to_string(), FieldRole::Measurement))
    .collect()
}

/// Training data spanning at least this long gets day-of-week features (`WEEKDAY_FEATURES=auto`).
pub const WEEK_SECONDS: f64 = 7.0 * 86_400.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_becomes_a_flat_record_with_its_start() {
        let config = Config::from_lookup(|_| None).unwrap();
        let events = [
            json!({"@timestamp": "2026-11-01T12:00:01Z", "service": "api", "endpoint": "/a", "method": "GET", "status": 200, "response_time_ms": 10}),
            json!({"@timestamp": "2026-11-01T12:00:02Z", "service": "api", "endpoint": "/a", "method": "GET", "status": 404, "response_time_ms": 20}),
        ];
        let rows = anomaly_core::window::aggregate(&window_params(&config), &events).unwrap();
        let r = window_record(&rows[0], &config.fields, false);
        assert_eq!(r["hour_cos"], -1.0);
        assert_eq!(r["count"], 2);
        assert_eq!(r["client_error_rate"], 0.5);
        assert_eq!(r["error_rate"], 0.0);
        assert_eq!(r["new_endpoint_share"], 0.0);
        assert_eq!(r.as_object().unwrap().len(), 10);
        assert_eq!(
            window_record(&rows[0], &config.fields, true)
                .as_object()
                .unwrap()
                .len(),
            12
        );
    }
}
