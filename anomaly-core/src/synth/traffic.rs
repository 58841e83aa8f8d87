//! The traffic generator: a thinned Poisson process per service, with incidents applied to fixed draws.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::sample::{exponential, normal, pick, round_to, uniform, zipf};
use super::{Event, Incident, RareField, TrafficParams, USER_AGENTS};
use crate::error::Result;

/// Latency never goes below this, whatever a [`Incident::LevelShift`] subtracts.
const MIN_LATENCY_MS: f64 = 0.1;
/// The HTTP method of each endpoint, by its index (every endpoint answers one method).
const METHODS: &[&str] = &["GET", "POST", "GET", "PUT", "GET", "DELETE"];
/// Statuses of successful responses, with their shares.
const OK_STATUSES: &[(u16, f64)] = &[(200, 0.85), (201, 0.06), (204, 0.04), (304, 0.05)];
/// Statuses of client errors, with their shares.
const CLIENT_STATUSES: &[(u16, f64)] = &[(400, 0.3), (401, 0.2), (403, 0.1), (404, 0.4)];
/// Statuses of service errors, with their shares.
const SERVER_STATUSES: &[(u16, f64)] = &[(500, 0.5), (502, 0.2), (503, 0.2), (504, 0.1)];

/// Generates synthetic requests for every service of `params`, with `incidents` planted, in timestamp order.
///
/// Arrivals per service are a Poisson process whose rate follows the daily cycle of
/// [`TrafficParams::rate_at`], sampled by thinning at the daily peak rate; timestamps are whole milliseconds in
/// `[start, start + duration)`. Each candidate request consumes the same draws whatever the incidents do, and
/// each service has its own random stream (`seed`, stream = service index), so a run with incidents differs from
/// the run without them only in what the incidents change, and one service's traffic does not depend on another's.
/// Events with equal timestamps are ordered by service, in the order of [`TrafficParams::services`].
///
/// # Errors
/// [`Error::InvalidParameter`](crate::Error::InvalidParameter) if `params` fail [`TrafficParams::validate`]
/// (named after the parameter) or an incident names an unknown service or has a magnitude outside its domain
/// (named `incidents`, with the incident's index in the message).
pub fn generate(params: &TrafficParams, incidents: &[Incident]) -> Result<Vec<Event>> {
    params.validate()?;
    for (i, incident) in incidents.iter().enumerate() {
        incident.validate(i, params)?;
    }
    let mut events = Vec::new();
    for (index, service) in params.service_names().iter().enumerate() {
        let mine: Vec<&Incident> = incidents
            .iter()
            .filter(|i| i.service() == service)
            .collect();
        ServiceTraffic::new(params, index, mine).run(&mut events);
    }
    // Stable: equal timestamps keep the services' order.
    events.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
    Ok(events)
}

/// The draws of one candidate request: always the same number, whatever the incidents do with them.
struct Draws {
    accept: f64,
    endpoint: f64,
    region: f64,
    user_agent: f64,
    status_class: f64,
    status_code: f64,
    rare: f64,
    latency_z: f64,
    bytes_z: f64,
}

impl Draws {
    fn sample(rng: &mut ChaCha8Rng) -> Self {
        Draws {
            accept: uniform(rng),
            endpoint: uniform(rng),
            region: uniform(rng),
            user_agent: uniform(rng),
            status_class: uniform(rng),
            status_code: uniform(rng),
            rare: uniform(rng),
            latency_z: normal(rng),
            bytes_z: normal(rng),
        }
    }
}

struct ServiceTraffic<'a> {
    params: &'a TrafficParams,
    service: &'a str,
    rng: ChaCha8Rng,
    incidents: Vec<&'a Incident>,
    endpoints: Vec<String>,
    endpoint_weights: Vec<f64>,
    region_weights: Vec<f64>,
    agent_weights: Vec<f64>,
}

impl<'a> ServiceTraffic<'a> {
    fn new(params: &'a TrafficParams, index: usize, incidents: Vec<&'a Incident>) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed_value());
        rng.set_stream(index as u64);
        let endpoints = params.endpoints(index);
        ServiceTraffic {
            params,
            service: &params.service_names()[index],
            rng,
            incidents,
            endpoint_weights: zipf(endpoints.len()),
            endpoints,
            region_weights: zipf(params.region_names().len()),
            agent_weights: USER_AGENTS.iter().map(|&(_, w)| w).collect(),
        }
    }

    fn run(mut self, out: &mut Vec<Event>) {
        let peak = self.params.peak_rate();
        let start_ms = (self.params.start_epoch() * 1000.0).ceil();
        let end = self.params.end_epoch();
        let mut t = self.params.start_epoch();
        loop {
            t += exponential(uniform(&mut self.rng), peak);
            let draws = Draws::sample(&mut self.rng);
            let ts = (t * 1000.0).floor().max(start_ms) / 1000.0;
            if ts >= end {
                break;
            }
            if let Some(event) = self.request(ts, &draws, peak) {
                out.push(event);
            }
        }
    }

    /// The request drawn at `ts`, or `None` if thinning (or a traffic drop) rejects it.
    fn request(&self, ts: f64, d: &Draws, peak: f64) -> Option<Event> {
        let params = self.params;
        let active = || self.incidents.iter().copied().filter(|i| i.is_active(ts));

        let mut keep = params.rate_at(ts) / peak;
        let (mut error_rate, client_error_rate) = params.error_rates();
        let mut latency_factor = 1.0;
        let mut latency_added = 0.0;
        for incident in active() {
            match *incident {
                Incident::TrafficDrop { fraction, .. } => keep *= fraction,
                Incident::ErrorBurst { error_rate: e, .. } => error_rate = e,
                Incident::LatencySpike { factor, .. } => latency_factor *= factor,
                Incident::LevelShift { added_ms, .. } => latency_added += added_ms,
                Incident::SlowDrift {
                    start,
                    ms_per_minute,
                    ..
                } => latency_added += ms_per_minute * (ts - start) / 60.0,
                Incident::RareCategory { .. } => {}
            }
        }
        if d.accept >= keep {
            return None;
        }

        let e = pick(d.endpoint, &self.endpoint_weights);
        let mut endpoint = self.endpoints[e].clone();
        let mut method = METHODS[e % METHODS.len()];
        let mut region = params.region_names()[pick(d.region, &self.region_weights)].clone();
        let mut user_agent = USER_AGENTS[pick(d.user_agent, &self.agent_weights)]
            .0
            .to_owned();
        for incident in active() {
            if let Incident::RareCategory {
                field,
                value,
                share,
                ..
            } = incident
                && d.rare < *share
            {
                match field {
                    RareField::Endpoint => {
                        endpoint.clone_from(value);
                        method = "GET";
                    }
                    RareField::Region => region.clone_from(value),
                    RareField::UserAgent => user_agent.clone_from(value),
                }
            }
        }

        let (status, failed) = if d.status_class < error_rate {
            (pick_in(d.status_code, SERVER_STATUSES), true)
        } else if d.status_class < error_rate + client_error_rate {
            (pick_in(d.status_code, CLIENT_STATUSES), true)
        } else {
            (pick_in(d.status_code, OK_STATUSES), false)
        };

        let endpoint_factor = 1.0 + 0.1 * e as f64;
        let median = params.median_latency_at(self.service, ts) * endpoint_factor;
        let latency = median * (params.latency_sigma_value() * d.latency_z).exp();
        let latency = (latency * latency_factor + latency_added).max(MIN_LATENCY_MS);

        let bytes = if failed || status == 204 || status == 304 {
            // Error pages and empty bodies are small and alike.
            180.0 * (0.1 * d.bytes_z).exp()
        } else {
            800.0 * (1.0 + e as f64) * (0.6 * d.bytes_z).exp()
        };

        Some(Event {
            timestamp: ts,
            service: self.service.to_owned(),
            endpoint,
            method: method.to_owned(),
            region,
            user_agent,
            status,
            response_time_ms: round_to(latency, 2).max(MIN_LATENCY_MS),
            bytes: bytes.round() as u64,
            label: active().next().map(Incident::kind),
        })
    }
}

/// The status picked by `u` from a table of statuses and shares (which sum to 1).
fn pick_in(u: f64, table: &[(u16, f64)]) -> u16 {
    let mut target = u;
    for &(status, share) in table {
        if target < share {
            return status;
        }
        target -= share;
    }
    table[table.len() - 1].0
}

#[cfg(test)]
mod tests;
