//! One synthetic request.

use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::IncidentKind;

/// One HTTP request of synthetic traffic.
///
/// `label` is the ground truth: the kind of the incident covering this event's service at its timestamp, if any.
/// It is deliberately left out of [`to_json`](Self::to_json), the form a detector sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Epoch seconds, a whole number of milliseconds.
    pub timestamp: f64,
    /// The service that answered.
    pub service: String,
    /// The endpoint called, e.g. `/v1/users`.
    pub endpoint: String,
    /// The HTTP method (each endpoint answers one).
    #[serde(default)]
    pub method: String,
    /// The client's region.
    pub region: String,
    /// The client's user agent.
    pub user_agent: String,
    /// HTTP status: 2xx/3xx, 4xx (client errors) or 5xx (service errors).
    pub status: u16,
    /// Latency in milliseconds, rounded to 0.01 ms.
    pub response_time_ms: f64,
    /// Response body size in bytes.
    pub bytes: u64,
    /// The kind of incident this event falls in, if any.
    pub label: Option<IncidentKind>,
}

impl Event {
    /// The event as a JSON record, without its label: `timestamp` as an RFC 3339 string in UTC with milliseconds
    /// (`2024-01-01T00:00:00.123Z`), the other fields under their own names.
    pub fn to_json(&self) -> Value {
        json!({
            "timestamp": rfc3339_millis(self.timestamp),
            "service": self.service,
            "endpoint": self.endpoint,
            "method": self.method,
            "region": self.region,
            "user_agent": self.user_agent,
            "status": self.status,
            "response_time_ms": self.response_time_ms,
            "bytes": self.bytes,
        })
    }

    /// Whether the event falls in an incident (has a label).
    pub fn is_anomalous(&self) -> bool {
        self.label.is_some()
    }

    /// Whether the status is a service error (5xx).
    pub fn is_error(&self) -> bool {
        self.status >= 500
    }
}

/// Epoch seconds as an RFC 3339 string with milliseconds; the number itself if out of chrono's range.
pub(crate) fn rfc3339_millis(epoch_seconds: f64) -> Value {
    let millis = (epoch_seconds * 1000.0).round();
    // The cast saturates; the range check below rejects what chrono cannot represent.
    DateTime::from_timestamp_millis(millis as i64)
        .filter(|_| millis.is_finite())
        .map(|dt| Value::String(dt.to_rfc3339_opts(SecondsFormat::Millis, true)))
        .unwrap_or_else(|| json!(epoch_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::kind::parse_moment;

    #[test]
    fn json_has_no_label_and_a_readable_timestamp() {
        let e = Event {
            timestamp: 1_704_067_200.123,
            service: "api".into(),
            endpoint: "/v1/users".into(),
            method: "GET".into(),
            region: "eu-west".into(),
            user_agent: "curl/8.5.0".into(),
            status: 503,
            response_time_ms: 12.5,
            bytes: 230,
            label: Some(IncidentKind::ErrorBurst),
        };
        let v = e.to_json();
        assert_eq!(v["timestamp"], "2024-01-01T00:00:00.123Z");
        assert!(v.get("label").is_none());
        assert_eq!(v["status"], 503);
        assert_eq!(v.as_object().unwrap().len(), 9);
        assert!(e.is_anomalous() && e.is_error());
        let m = parse_moment(v["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(m.epoch_seconds, e.timestamp);
    }

    #[test]
    fn out_of_range_timestamps_stay_numbers() {
        assert_eq!(rfc3339_millis(1e20), json!(1e20));
        assert_eq!(rfc3339_millis(0.0), "1970-01-01T00:00:00.000Z");
    }
}
