//! [`Telemetry`]: the service's metric registry and its request-latency histogram.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// Labels of one request: its method, its route as declared (`/history/{query_id}`, never the raw path, so the
/// number of series stays bounded; `unmatched` for a path no route takes) and its status code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) method: String,
    pub(crate) route: String,
    pub(crate) status: u16,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The registry a service exposes at `/metrics`, every name under the service's prefix, with
/// `<prefix>_request_duration_seconds` (a histogram per method, route and status) already in it. Register the
/// service's own metrics (or a [`Collector`](prometheus_client::collector::Collector) that reads them at scrape
/// time) in [`registry`](Self::registry) before handing it to [`app`](crate::app).
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    unprefixed: Registry,
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

impl Telemetry {
    /// A registry whose metric names start with `prefix` (`ddn_plugin` gives `ddn_plugin_requests_total`).
    pub fn new(prefix: &str) -> Self {
        let mut registry = Registry::with_prefix(prefix);
        let requests: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from a request's headers to its response, by method, route and status",
            requests.clone(),
        );
        Telemetry {
            registry,
            unprefixed: Registry::default(),
            requests,
        }
    }

    /// The registry, to add the service's own metrics.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// A registry whose names go out without the service's prefix: for a name the system a service replaces
    /// already made public (dashboards and alerts query it as it is). Rendered after the prefixed ones.
    pub fn unprefixed_registry(&mut self) -> &mut Registry {
        &mut self.unprefixed
    }

    pub(crate) fn observe(&self, labels: RequestLabels, took: Duration) {
        self.requests
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// The exposition: OpenMetrics text when `accept` asks for it (as Prometheus does by default), else the
    /// Prometheus text format 0.0.4 (what `promtool check metrics` and older scrapers read). Returns the content
    /// type and the body.
    pub fn render(&self, accept: &str) -> (&'static str, String) {
        let mut out = String::new();
        if accept.contains("application/openmetrics-text") {
            // Writing into a String cannot fail.
            use prometheus_client::encoding::text;
            let _ = text::encode_registry(&mut out, &self.registry)
                .and_then(|()| text::encode_registry(&mut out, &self.unprefixed))
                .and_then(|()| text::encode_eof(&mut out));
            (
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                out,
            )
        } else {
            use prometheus_client::encoding::prometheus_text;
            let _ = prometheus_text::encode(&mut out, &self.registry)
                .and_then(|()| prometheus_text::encode(&mut out, &self.unprefixed));
            (
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                out,
            )
        }
    }
}
