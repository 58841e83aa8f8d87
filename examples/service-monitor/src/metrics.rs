//! The monitor's figures in `/metrics`, under the `service_monitor_` prefix.

use std::sync::atomic::AtomicU64;

use service_kit::Telemetry;
use service_kit::prometheus_client::encoding::EncodeLabelSet;
use service_kit::prometheus_client::metrics::counter::Counter;
use service_kit::prometheus_client::metrics::family::Family;
use service_kit::prometheus_client::metrics::gauge::Gauge;

/// Label of `anomalies_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectorLabel {
    /// `isolation_forest` or `range_rule`.
    pub detector: String,
}

/// Labels of `alerts_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// `log` or `webhook`.
    pub channel: String,
    /// `raised` (log), or the webhook's outcome.
    pub outcome: String,
}

/// Every figure the monitor counts; cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct MonitorMetrics {
    /// Events read into windows.
    pub events_read: Counter,
    /// Events refused.
    pub events_refused: Counter,
    /// Events that came after their window was scored.
    pub events_late: Counter,
    /// Windows scored.
    pub windows_scored: Counter,
    /// Windows the engine could not take.
    pub windows_unscored: Counter,
    /// Windows flagged, by the detector named first.
    pub anomalies: Family<DetectorLabel, Counter>,
    /// Anomaly documents written to the sink.
    pub anomalies_written: Counter,
    /// Alerts, by channel and outcome.
    pub alerts: Family<AlertLabels, Counter>,
    /// Reads that failed (each retried at the next tick).
    pub read_failures: Counter,
    /// Seconds between the last read and the end of the last window scored.
    pub read_lag: Gauge<f64, AtomicU64>,
    /// When the last read ended, epoch seconds.
    pub last_read: Gauge<f64, AtomicU64>,
}

impl MonitorMetrics {
    /// Registers every figure in `telemetry`'s registry.
    pub fn register(telemetry: &mut Telemetry) -> Self {
        let m = MonitorMetrics {
            events_read: Counter::default(),
            events_refused: Counter::default(),
            events_late: Counter::default(),
            windows_scored: Counter::default(),
            windows_unscored: Counter::default(),
            anomalies: Family::default(),
            anomalies_written: Counter::default(),
            alerts: Family::default(),
            read_failures: Counter::default(),
            read_lag: Gauge::default(),
            last_read: Gauge::default(),
        };
        let r = telemetry.registry();
        r.register(
            "events_read",
            "API log events read into windows",
            m.events_read.clone(),
        );
        r.register(
            "events_refused",
            "Events refused (not an object, no service or timestamp, a status or latency that is not a number)",
            m.events_refused.clone(),
        );
        r.register(
            "events_late",
            "Events that arrived after their window had been scored (not counted in it)",
            m.events_late.clone(),
        );
        r.register(
            "windows_scored",
            "Service windows scored",
            m.windows_scored.clone(),
        );
        r.register(
            "anomalies",
            "Service windows flagged, by the detector that flagged them first",
            m.anomalies.clone(),
        );
        r.register(
            "anomalies_written",
            "Anomaly documents written to the anomaly index or the store",
            m.anomalies_written.clone(),
        );
        r.register(
            "alerts",
            "Alerts, by channel (log, webhook) and outcome",
            m.alerts.clone(),
        );
        r.register(
            "read_failures",
            "Reads of new events that failed (retried at the next interval)",
            m.read_failures.clone(),
        );
        r.register(
            "read_lag_seconds",
            "Seconds from the end of the last window scored to the last read",
            m.read_lag.clone(),
        );
        r.register(
            "last_read_timestamp_seconds",
            "When the last read of new events ended (Unix time)",
            m.last_read.clone(),
        );
        m
    }

    /// Counts an alert's outcome on a channel.
    pub fn alert(&self, channel: &str, outcome: &str) {
        self.alerts
            .get_or_create(&AlertLabels {
                channel: channel.into(),
                outcome: outcome.into(),
            })
            .inc();
    }
}
