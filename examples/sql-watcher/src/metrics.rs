//! The application's own figures in `/metrics`, under the kit's `sql_watcher_` prefix.

use service_kit::Telemetry;
use service_kit::prometheus_client::encoding::EncodeLabelSet;
use service_kit::prometheus_client::metrics::counter::Counter;
use service_kit::prometheus_client::metrics::family::Family;
use service_kit::prometheus_client::metrics::gauge::Gauge;
use service_kit::prometheus_client::metrics::histogram::Histogram;

/// Label of `runs_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    result: &'static str,
    trigger: &'static str,
}

/// Every figure the application counts; cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct Metrics {
    runs: Family<RunLabels, Counter>,
    rows: Counter,
    anomalies: Counter,
    run_seconds: Histogram,
    running: Gauge,
    behind: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            runs: Family::default(),
            rows: Counter::default(),
            anomalies: Counter::default(),
            run_seconds: Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            running: Gauge::default(),
            behind: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Registers every figure in `telemetry`'s registry.
    pub fn register(telemetry: &mut Telemetry) -> Self {
        let m = Metrics::default();
        let r = telemetry.registry();
        r.register(
            "runs",
            "Fetch-and-score runs, by result (ok, error) and trigger (schedule, request)",
            m.runs.clone(),
        );
        r.register("rows", "Rows fetched, scored and stored", m.rows.clone());
        r.register(
            "anomalies",
            "Rows flagged as anomalies",
            m.anomalies.clone(),
        );
        r.register(
            "run_duration_seconds",
            "Time of one run, fetch, scoring and storage",
            m.run_seconds.clone(),
        );
        r.register("runs_in_progress", "Runs under way now", m.running.clone());
        r.register(
            "sources_behind",
            "Sources past their due time, waiting for a free run slot (at the scheduler's last look)",
            m.behind.clone(),
        );
        m
    }

    pub(crate) fn run_started(&self) {
        self.running.inc();
    }

    pub(crate) fn run_finished(
        &self,
        ok: bool,
        trigger: &'static str,
        rows: u64,
        anomalies: u64,
        seconds: f64,
    ) {
        self.running.dec();
        let result = if ok { "ok" } else { "error" };
        self.runs
            .get_or_create(&RunLabels { result, trigger })
            .inc();
        self.rows.inc_by(rows);
        self.anomalies.inc_by(anomalies);
        self.run_seconds.observe(seconds);
    }

    pub(crate) fn behind(&self, n: usize) {
        self.behind.set(n as i64);
    }
}
