//! One service's statistics over one window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::records::kind::Moment;
use crate::synth::rfc3339_millis;

/// The statistics of one service over one window `[window_start, window_start + width)`.
///
/// A window without events (`count` 0) has no error rate and no latency statistics (`None`, `null` in JSON); a
/// window whose events carry no latency has an error rate but no latency statistics. Quantiles are exact, with
/// numpy's default `linear` interpolation. The calendar features place `window_start` on the unit circle in UTC,
/// as the record vectoriser does for date/time fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    /// The service.
    pub service: String,
    /// Start of the window, epoch seconds.
    pub window_start: f64,
    /// Events in the window.
    pub count: u64,
    /// Share of the events whose status counts as an error; `None` when `count` is 0.
    pub error_rate: Option<f64>,
    /// Share of the events answered with a client error: a status from 400 up to (not including) the error
    /// status (the 4xx family by default); `None` when `count` is 0.
    #[serde(default)]
    pub client_error_rate: Option<f64>,
    /// Median latency.
    pub latency_p50: Option<f64>,
    /// 95th percentile of the latency.
    pub latency_p95: Option<f64>,
    /// 99th percentile of the latency.
    #[serde(default)]
    pub latency_p99: Option<f64>,
    /// Largest latency.
    pub latency_max: Option<f64>,
    /// Mean latency.
    pub latency_mean: Option<f64>,
    /// Sine of the hour of day of `window_start` (UTC) on the unit circle.
    pub hour_sin: f64,
    /// Cosine of the hour of day.
    pub hour_cos: f64,
    /// Sine of the day of week (Monday = 0) on the unit circle.
    pub weekday_sin: f64,
    /// Cosine of the day of week.
    pub weekday_cos: f64,
    /// Mean of each other numeric field, over the events of the window that have it.
    pub extra: BTreeMap<String, f64>,
    /// For each of the [category fields](super::WindowParams::category_fields): the share of the window's events
    /// whose value is new to the service, first shown in this window or in the
    /// [`new_value_windows`](super::WindowParams::new_value_windows)` - 1` before it (0 for a window without
    /// events, and for the service's first windows with events, which start its vocabulary: see
    /// [`new_value_warmup_windows`](super::WindowParams::new_value_warmup_windows)).
    #[serde(default)]
    pub new_value_share: BTreeMap<String, f64>,
}

impl WindowRow {
    /// A row with the calendar features of `window_start` and everything else empty.
    pub(super) fn empty(service: &str, window_start: f64) -> Self {
        let (hour_sin, hour_cos, weekday_sin, weekday_cos) = calendar(window_start);
        WindowRow {
            service: service.to_owned(),
            window_start,
            count: 0,
            error_rate: None,
            client_error_rate: None,
            latency_p50: None,
            latency_p95: None,
            latency_p99: None,
            latency_max: None,
            latency_mean: None,
            hour_sin,
            hour_cos,
            weekday_sin,
            weekday_cos,
            extra: BTreeMap::new(),
            new_value_share: BTreeMap::new(),
        }
    }

    /// The row as one flat JSON object for the record vectoriser: `window_start` as an RFC 3339 string (UTC, with
    /// milliseconds), missing statistics as `null`, each extra field `f` as `mean_f`, and each category field `f`
    /// as `new_f_share`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("service".into(), json!(self.service));
        map.insert("window_start".into(), rfc3339_millis(self.window_start));
        map.insert("count".into(), json!(self.count));
        for (name, v) in [
            ("error_rate", self.error_rate),
            ("client_error_rate", self.client_error_rate),
            ("latency_p50", self.latency_p50),
            ("latency_p95", self.latency_p95),
            ("latency_p99", self.latency_p99),
            ("latency_max", self.latency_max),
            ("latency_mean", self.latency_mean),
        ] {
            map.insert(name.into(), json!(v));
        }
        for (name, v) in [
            ("hour_sin", self.hour_sin),
            ("hour_cos", self.hour_cos),
            ("weekday_sin", self.weekday_sin),
            ("weekday_cos", self.weekday_cos),
        ] {
            map.insert(name.into(), json!(v));
        }
        for (field, &mean) in &self.extra {
            map.insert(format!("mean_{field}"), json!(mean));
        }
        for (field, &share) in &self.new_value_share {
            map.insert(format!("new_{field}_share"), json!(share));
        }
        Value::Object(map)
    }
}

/// `(hour_sin, hour_cos, weekday_sin, weekday_cos)` of epoch second `t` in UTC.
fn calendar(t: f64) -> (f64, f64, f64, f64) {
    let day = (t / 86_400.0).floor();
    let moment = Moment {
        epoch_seconds: t,
        hour: (t - day * 86_400.0).clamp(0.0, 86_399.999_999) / 3600.0,
        // 1970-01-01 was a Thursday (3, counting from Monday = 0).
        weekday: (day as i64 + 3).rem_euclid(7) as u32,
    };
    let (hour_sin, hour_cos) = moment.hour_cycle();
    let (weekday_sin, weekday_cos) = moment.weekday_cycle();
    (hour_sin, hour_cos, weekday_sin, weekday_cos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::kind::parse_moment;

    #[test]
    fn calendar_matches_the_vectorisers_moments() {
        for s in [
            "2024-03-05T14:00:00Z",
            "2024-01-01T00:00:00Z",
            "1969-12-31T23:30:00Z",
            "2024-03-10T06:45:00Z",
        ] {
            let m = parse_moment(s).unwrap();
            let (hs, hc, ws, wc) = calendar(m.epoch_seconds);
            let (es, ec) = m.hour_cycle();
            let (fs, fc) = m.weekday_cycle();
            assert!((hs - es).abs() < 1e-12 && (hc - ec).abs() < 1e-12, "{s}");
            assert!((ws - fs).abs() < 1e-12 && (wc - fc).abs() < 1e-12, "{s}");
        }
    }

    #[test]
    fn json_is_flat_with_nulls_for_empty_windows() {
        let mut row = WindowRow::empty("api", 1_709_647_200.0);
        row.extra.insert("bytes".into(), 12.0);
        let v = row.to_json();
        assert_eq!(v["window_start"], "2024-03-05T14:00:00.000Z");
        assert_eq!(v["count"], 0);
        assert!(v["latency_p95"].is_null() && v["error_rate"].is_null());
        assert_eq!(v["mean_bytes"], 12.0);
        assert!(
            v.as_object()
                .unwrap()
                .values()
                .all(|x| !x.is_object() && !x.is_array())
        );
        let back: WindowRow = serde_json::from_value(serde_json::to_value(&row).unwrap()).unwrap();
        assert_eq!(back, row);
    }
}
