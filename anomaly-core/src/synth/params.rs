//! Parameters of the traffic generator.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// 2024-01-01T00:00:00Z in epoch seconds.
const DEFAULT_START: f64 = 1_704_067_200.0;
/// 9999-12-31T23:59:59Z: the last second an RFC 3339 timestamp can name.
const LAST_SECOND: f64 = 253_402_300_799.0;
/// The most events one call may be expected to produce (at the daily peak), so a typo cannot exhaust memory.
pub(crate) const MAX_EXPECTED_EVENTS: f64 = 20_000_000.0;
/// The most endpoints per service.
const MAX_ENDPOINTS: usize = 1_000;

/// Resource names for endpoints, rotated per service so that services differ.
const RESOURCES: &[&str] = &[
    "users", "orders", "items", "search", "sessions", "invoices", "payments", "cart", "profile",
    "tokens", "reports", "health",
];

/// Parameters of [`generate`](super::generate): what normal traffic looks like.
///
/// | parameter | default | meaning |
/// | --- | --- | --- |
/// | `seed` | 0 | seed of the random draws; each service draws from its own stream of it |
/// | `start` | 1 704 067 200 (2024-01-01T00:00:00Z) | first instant, epoch seconds |
/// | `duration_seconds` | 3600 | length of the traffic; events fall in `[start, start + duration)` |
/// | `services` | `api`, `auth`, `billing` | service names |
/// | `rate_per_second` | 5 | mean requests per second per service, averaged over a day |
/// | `daily_rate_amplitude` | 0.5 | the rate is `rate × (1 + a·cos(2π(h − 14)/24))` at UTC hour `h`: busiest at 14:00, quietest at 02:00 |
/// | `endpoints_per_service` | 5 | endpoints per service, `/v1/<resource>`, popularity `1, 1/2, 1/3, …` |
/// | `regions` | `eu-west`, `us-east`, `ap-south` | client regions, popularity `1, 1/2, 1/3, …` |
/// | `latency_ms` | 100 | median latency of a service without its own |
/// | `service_latency_ms` | `api` 80, `auth` 40, `billing` 150 | median latency per service |
/// | `latency_sigma` | 0.3 | σ of the log-normal latency around the median |
/// | `daily_latency_amplitude` | 0.2 | the median is `median × (1 + a·cos(2π(h − 14)/24))`: slower when busier |
/// | `error_rate` | 0.01 | share of requests answered with a 5xx status |
/// | `client_error_rate` | 0.02 | share answered with a 4xx status (not errors of the service) |
///
/// Endpoints differ a little: the `i`-th (from 0) is `1 + 0.1·i` times slower than the service's median and
/// returns larger bodies. Every parameter is checked by [`validate`](Self::validate), which
/// [`generate`](super::generate) calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficParams {
    seed: u64,
    start: f64,
    duration_seconds: f64,
    services: Vec<String>,
    rate_per_second: f64,
    daily_rate_amplitude: f64,
    endpoints_per_service: usize,
    regions: Vec<String>,
    latency_ms: f64,
    service_latency_ms: BTreeMap<String, f64>,
    latency_sigma: f64,
    daily_latency_amplitude: f64,
    error_rate: f64,
    client_error_rate: f64,
}

impl Default for TrafficParams {
    fn default() -> Self {
        Self::new()
    }
}

impl TrafficParams {
    /// The defaults in the table above.
    pub fn new() -> Self {
        TrafficParams {
            seed: 0,
            start: DEFAULT_START,
            duration_seconds: 3600.0,
            services: ["api", "auth", "billing"].map(String::from).to_vec(),
            rate_per_second: 5.0,
            daily_rate_amplitude: 0.5,
            endpoints_per_service: 5,
            regions: ["eu-west", "us-east", "ap-south"]
                .map(String::from)
                .to_vec(),
            latency_ms: 100.0,
            service_latency_ms: [("api", 80.0), ("auth", 40.0), ("billing", 150.0)]
                .into_iter()
                .map(|(s, ms)| (s.to_owned(), ms))
                .collect(),
            latency_sigma: 0.3,
            daily_latency_amplitude: 0.2,
            error_rate: 0.01,
            client_error_rate: 0.02,
        }
    }

    /// Seed of the random draws (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// First instant in epoch seconds (default 2024-01-01T00:00:00Z); timestamps are whole milliseconds, so a start
    /// within a millisecond is rounded up to it.
    pub fn start(mut self, epoch_seconds: f64) -> Self {
        self.start = epoch_seconds;
        self
    }

    /// Length of the traffic in seconds (default 3600).
    pub fn duration_seconds(mut self, seconds: f64) -> Self {
        self.duration_seconds = seconds;
        self
    }

    /// Service names (default `api`, `auth`, `billing`); per-service latencies of services not in the list are
    /// forgotten.
    pub fn services<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.services = names.into_iter().map(Into::into).collect();
        let keep: BTreeSet<&String> = self.services.iter().collect();
        self.service_latency_ms.retain(|s, _| keep.contains(s));
        self
    }

    /// Mean requests per second per service over a day (default 5).
    pub fn rate_per_second(mut self, rate: f64) -> Self {
        self.rate_per_second = rate;
        self
    }

    /// Relative swing of the rate over a day, in `[0, 1)` (default 0.5; 0 for a constant rate).
    pub fn daily_rate_amplitude(mut self, amplitude: f64) -> Self {
        self.daily_rate_amplitude = amplitude;
        self
    }

    /// Endpoints per service, 1 to 1000 (default 5).
    pub fn endpoints_per_service(mut self, n: usize) -> Self {
        self.endpoints_per_service = n;
        self
    }

    /// Client regions (default `eu-west`, `us-east`, `ap-south`).
    pub fn regions<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.regions = names.into_iter().map(Into::into).collect();
        self
    }

    /// Median latency in milliseconds of services without their own (default 100).
    pub fn latency_ms(mut self, median_ms: f64) -> Self {
        self.latency_ms = median_ms;
        self
    }

    /// Median latency in milliseconds of one service (defaults: `api` 80, `auth` 40, `billing` 150).
    pub fn service_latency_ms(mut self, service: impl Into<String>, median_ms: f64) -> Self {
        self.service_latency_ms.insert(service.into(), median_ms);
        self
    }

    /// σ of the log-normal latency, in `[0, 3]` (default 0.3).
    pub fn latency_sigma(mut self, sigma: f64) -> Self {
        self.latency_sigma = sigma;
        self
    }

    /// Relative swing of the median latency over a day, in `[0, 1)` (default 0.2).
    pub fn daily_latency_amplitude(mut self, amplitude: f64) -> Self {
        self.daily_latency_amplitude = amplitude;
        self
    }

    /// Share of requests answered with a 5xx status, in `[0, 1]` (default 0.01).
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// Share of requests answered with a 4xx status, in `[0, 1]` (default 0.02).
    pub fn client_error_rate(mut self, rate: f64) -> Self {
        self.client_error_rate = rate;
        self
    }

    /// The first instant, epoch seconds.
    pub fn start_epoch(&self) -> f64 {
        self.start
    }

    /// The end of the traffic (exclusive), epoch seconds.
    pub fn end_epoch(&self) -> f64 {
        self.start + self.duration_seconds
    }

    /// The service names.
    pub fn service_names(&self) -> &[String] {
        &self.services
    }

    /// The region names.
    pub fn region_names(&self) -> &[String] {
        &self.regions
    }

    /// The mean rate per service at epoch second `t`, before incidents.
    pub fn rate_at(&self, t: f64) -> f64 {
        self.rate_per_second * (1.0 + self.daily_rate_amplitude * daily_load(t))
    }

    /// The highest rate per service over a day.
    pub(crate) fn peak_rate(&self) -> f64 {
        self.rate_per_second * (1.0 + self.daily_rate_amplitude)
    }

    /// The median latency of `service` at epoch second `t`, before incidents and endpoint effects.
    pub fn median_latency_at(&self, service: &str, t: f64) -> f64 {
        let base = self
            .service_latency_ms
            .get(service)
            .copied()
            .unwrap_or(self.latency_ms);
        base * (1.0 + self.daily_latency_amplitude * daily_load(t))
    }

    /// The endpoint names of the service at `index` in [`service_names`](Self::service_names).
    pub fn endpoints(&self, service_index: usize) -> Vec<String> {
        (0..self.endpoints_per_service)
            .map(|i| {
                let k = i + service_index;
                if i < RESOURCES.len() {
                    format!("/v1/{}", RESOURCES[k % RESOURCES.len()])
                } else {
                    format!("/v1/resource-{i}")
                }
            })
            .collect()
    }

    pub(crate) fn seed_value(&self) -> u64 {
        self.seed
    }

    pub(crate) fn latency_sigma_value(&self) -> f64 {
        self.latency_sigma
    }

    pub(crate) fn error_rates(&self) -> (f64, f64) {
        (self.error_rate, self.client_error_rate)
    }

    /// Checks every parameter.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first parameter outside its domain: a non-finite or out-of-range
    /// start (before 1970 or after 9999), a non-positive duration, no services or regions, empty or duplicate names,
    /// a latency set for an unknown service, a non-positive rate or latency, amplitudes outside `[0, 1)`, rates
    /// outside `[0, 1]` or summing above 1, or traffic expected to exceed 20 million events.
    pub fn validate(&self) -> Result<()> {
        if !(self.start.is_finite() && (0.0..=LAST_SECOND).contains(&self.start)) {
            return Err(Error::invalid(
                "start",
                format!(
                    "must be epoch seconds between 1970 and 9999, got {}",
                    self.start
                ),
            ));
        }
        if !(self.duration_seconds.is_finite() && self.duration_seconds > 0.0) {
            return Err(Error::invalid(
                "duration_seconds",
                format!("must be finite and positive, got {}", self.duration_seconds),
            ));
        }
        if self.end_epoch() > LAST_SECOND {
            return Err(Error::invalid(
                "duration_seconds",
                "traffic must end before the year 10000",
            ));
        }
        check_names("services", &self.services)?;
        check_names("regions", &self.regions)?;
        if let Some(unknown) = self
            .service_latency_ms
            .keys()
            .find(|s| !self.services.contains(s))
        {
            return Err(Error::invalid(
                "service_latency_ms",
                format!("latency set for unknown service `{unknown}`"),
            ));
        }
        positive("rate_per_second", self.rate_per_second)?;
        positive("latency_ms", self.latency_ms)?;
        for &ms in self.service_latency_ms.values() {
            positive("service_latency_ms", ms)?;
        }
        amplitude("daily_rate_amplitude", self.daily_rate_amplitude)?;
        amplitude("daily_latency_amplitude", self.daily_latency_amplitude)?;
        if !(0.0..=3.0).contains(&self.latency_sigma) {
            return Err(Error::invalid(
                "latency_sigma",
                format!("must be in [0, 3], got {}", self.latency_sigma),
            ));
        }
        if !(1..=MAX_ENDPOINTS).contains(&self.endpoints_per_service) {
            return Err(Error::invalid(
                "endpoints_per_service",
                format!(
                    "must be 1 to {MAX_ENDPOINTS}, got {}",
                    self.endpoints_per_service
                ),
            ));
        }
        share("error_rate", self.error_rate)?;
        share("client_error_rate", self.client_error_rate)?;
        if self.error_rate + self.client_error_rate > 1.0 {
            return Err(Error::invalid(
                "client_error_rate",
                "error_rate + client_error_rate must not exceed 1",
            ));
        }
        let expected = self.peak_rate() * self.duration_seconds * self.services.len() as f64;
        if expected > MAX_EXPECTED_EVENTS {
            return Err(Error::invalid(
                "rate_per_second",
                format!(
                    "up to {expected:.0} events expected, more than the {MAX_EXPECTED_EVENTS:.0} one call may produce"
                ),
            ));
        }
        Ok(())
    }
}

/// Load of the day at epoch second `t`, in `[-1, 1]`: 1 at 14:00 UTC, −1 at 02:00 UTC.
fn daily_load(t: f64) -> f64 {
    let hour = t.rem_euclid(86_400.0) / 3600.0;
    ((hour - 14.0) / 24.0 * std::f64::consts::TAU).cos()
}

fn check_names(name: &'static str, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Err(Error::invalid(name, "must not be empty"));
    }
    let mut seen = BTreeSet::new();
    for n in names {
        if n.is_empty() {
            return Err(Error::invalid(name, "names must not be empty"));
        }
        if !seen.insert(n) {
            return Err(Error::invalid(name, format!("`{n}` appears twice")));
        }
    }
    Ok(())
}

fn positive(name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            name,
            format!("must be finite and positive, got {v}"),
        ))
    }
}

fn amplitude(name: &'static str, v: f64) -> Result<()> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(Error::invalid(name, format!("must be in [0, 1), got {v}")))
    }
}

fn share(name: &'static str, v: f64) -> Result<()> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(Error::invalid(name, format!("must be in [0, 1], got {v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(p: TrafficParams) -> &'static str {
        match p.validate() {
            Err(Error::InvalidParameter { name, .. }) => name,
            other => panic!("expected InvalidParameter, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        TrafficParams::new().validate().unwrap();
        assert_eq!(TrafficParams::default(), TrafficParams::new());
    }

    #[test]
    fn bad_parameters_are_named() {
        let p = TrafficParams::new;
        assert_eq!(rejected(p().start(f64::NAN)), "start");
        assert_eq!(rejected(p().start(-1.0)), "start");
        assert_eq!(rejected(p().duration_seconds(0.0)), "duration_seconds");
        assert_eq!(
            rejected(p().duration_seconds(f64::INFINITY)),
            "duration_seconds"
        );
        assert_eq!(rejected(p().services(Vec::<String>::new())), "services");
        assert_eq!(rejected(p().services(["a", "a"])), "services");
        assert_eq!(rejected(p().services(["a", ""])), "services");
        assert_eq!(rejected(p().regions(["x", "x"])), "regions");
        assert_eq!(
            rejected(p().service_latency_ms("nope", 10.0)),
            "service_latency_ms"
        );
        assert_eq!(
            rejected(p().service_latency_ms("api", 0.0)),
            "service_latency_ms"
        );
        assert_eq!(rejected(p().rate_per_second(0.0)), "rate_per_second");
        assert_eq!(rejected(p().rate_per_second(1e9)), "rate_per_second");
        assert_eq!(rejected(p().latency_ms(-5.0)), "latency_ms");
        assert_eq!(
            rejected(p().daily_rate_amplitude(1.0)),
            "daily_rate_amplitude"
        );
        assert_eq!(
            rejected(p().daily_latency_amplitude(-0.1)),
            "daily_latency_amplitude"
        );
        assert_eq!(rejected(p().latency_sigma(f64::NAN)), "latency_sigma");
        assert_eq!(
            rejected(p().endpoints_per_service(0)),
            "endpoints_per_service"
        );
        assert_eq!(rejected(p().error_rate(1.5)), "error_rate");
        assert_eq!(
            rejected(p().error_rate(0.6).client_error_rate(0.6)),
            "client_error_rate"
        );
    }

    #[test]
    fn replacing_services_forgets_their_latencies() {
        let p = TrafficParams::new().services(["api", "search"]);
        p.validate().unwrap();
        let ratio = p.median_latency_at("api", 0.0) / p.median_latency_at("search", 0.0);
        assert!((ratio - 0.8).abs() < 1e-12, "{ratio}");
    }

    #[test]
    fn busiest_in_the_afternoon() {
        let p = TrafficParams::new();
        let day = 1_704_067_200.0;
        assert!((p.rate_at(day + 14.0 * 3600.0) - 7.5).abs() < 1e-9);
        assert!((p.rate_at(day + 2.0 * 3600.0) - 2.5).abs() < 1e-9);
        assert!(
            p.median_latency_at("api", day + 14.0 * 3600.0)
                > p.median_latency_at("api", day + 2.0 * 3600.0)
        );
    }

    #[test]
    fn endpoints_are_distinct_per_service() {
        let p = TrafficParams::new().endpoints_per_service(20);
        let e = p.endpoints(1);
        assert_eq!(e.len(), 20);
        assert_eq!(e.iter().collect::<BTreeSet<_>>().len(), 20);
        assert_ne!(p.endpoints(0)[0], e[0]);
    }
}
