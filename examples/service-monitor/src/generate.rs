//! `generate`: realistic API traffic for several services with labelled incidents, to an NDJSON file or into a
//! cluster, at a chosen rate or as fast as possible.

use std::io::Write;
use std::path::{Path, PathBuf};

use anomaly_core::synth::{self, Event, Incident, RareField, TrafficParams};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::elastic::Elastic;
use crate::error::{MonitorError, Result};
use crate::fields::Fields;

/// Events sent to a cluster per `_bulk` request.
const BULK_EVENTS: usize = 5_000;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// The services (default `api`, `auth`, `billing`, `search`).
    pub services: Vec<String>,
    /// Requests per second per service at the daily mean (default 5).
    pub rate: f64,
    /// Hours of traffic (default 6).
    pub hours: f64,
    /// Start, epoch seconds (default: `hours` before now, or now with `realtime`).
    pub start: Option<f64>,
    /// Random seed (default 1).
    pub seed: u64,
    /// Plant the incident plan (default true).
    pub incidents: bool,
    /// Incidents start after this many hours (default 0: anywhere after the first tenth of the traffic).
    pub quiet_hours: f64,
    /// Write each event when its timestamp comes (from now on) instead of as fast as possible.
    pub realtime: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            services: ["api", "auth", "billing", "search"]
                .map(String::from)
                .to_vec(),
            rate: 5.0,
            hours: 6.0,
            start: None,
            seed: 1,
            incidents: true,
            quiet_hours: 0.0,
            realtime: false,
        }
    }
}

/// What `generate` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Generated {
    /// Events written.
    pub events: u64,
    /// The incidents planted, with their service, kind, start and length.
    pub incidents: Vec<Incident>,
    /// Where: the NDJSON file, or the index.
    pub target: String,
    /// The labels file written beside an NDJSON file (`<file>.incidents.json`).
    pub labels: Option<PathBuf>,
    /// First and last instant of the traffic, epoch seconds.
    pub span: (f64, f64),
}

/// The traffic parameters of `options`.
pub fn traffic(options: &GenerateOptions) -> TrafficParams {
    let start = options.start.unwrap_or_else(|| {
        let now = crate::commands::unix_now().floor();
        if options.realtime {
            now
        } else {
            now - options.hours * 3600.0
        }
    });
    let mut params = TrafficParams::new()
        .seed(options.seed)
        .start(start)
        .duration_seconds(options.hours * 3600.0)
        .services(options.services.clone())
        .rate_per_second(options.rate);
    // Medians for services the defaults do not know: between 40 and 150 ms, by name.
    for (i, s) in options.services.iter().enumerate() {
        if !["api", "auth", "billing"].contains(&s.as_str()) {
            params = params.service_latency_ms(s.clone(), 50.0 + 25.0 * (i % 5) as f64);
        }
    }
    params
}

/// The incident plan over `params`: one of each kind (latency spike, error burst, level shift, slow drift, a rare
/// endpoint, traffic drop), each 20–60 minutes, on the services in turn, spread over the traffic after its
/// first tenth (or after `quiet_hours`), an hour apart at least when the traffic is long enough.
pub fn incident_plan(params: &TrafficParams, quiet_hours: f64) -> Vec<Incident> {
    let services = params.service_names();
    let start = params.start_epoch();
    let span = params.end_epoch() - start;
    let from = start + (span * 0.1).max(quiet_hours * 3600.0);
    let slot = (params.end_epoch() - from) / 6.0;
    let at = |i: usize| from + slot * i as f64 + slot * 0.25;
    let svc = |i: usize| services[i % services.len()].clone();
    let minutes = |m: f64| (m * 60.0).min(slot * 0.6);
    vec![
        Incident::latency_spike(svc(0), at(0), minutes(20.0), 4.0),
        Incident::error_burst(svc(1), at(1), minutes(20.0), 0.25),
        Incident::LevelShift {
            service: svc(2),
            start: at(2),
            duration_seconds: minutes(45.0),
            added_ms: 120.0,
        },
        Incident::slow_drift(svc(3), at(3), minutes(60.0), 6.0),
        Incident::rare_category(
            svc(4),
            at(4),
            minutes(20.0),
            RareField::Endpoint,
            "/v1/admin/export",
        ),
        Incident::traffic_drop(svc(5), at(5), minutes(20.0), 0.1),
    ]
}

/// An event as the monitor reads it: the generator's fields under the configured names.
pub fn event_json(event: &Event, fields: &Fields) -> Value {
    let Value::Object(plain) = event.to_json() else {
        return Value::Null;
    };
    let mut map = Map::with_capacity(plain.len());
    for (k, v) in plain {
        let name = match k.as_str() {
            "timestamp" => fields.timestamp.clone(),
            "service" => fields.service.clone(),
            "endpoint" => fields.endpoint.clone(),
            "method" => fields.method.clone(),
            "status" => fields.status.clone(),
            "response_time_ms" => fields.latency.clone(),
            _ => k,
        };
        map.insert(name, v);
    }
    Value::Object(map)
}

/// Where generated events go.
#[derive(Debug, Clone)]
pub enum Target {
    /// An NDJSON file (with the incident labels beside it).
    File(PathBuf),
    /// A cluster: the index `ES_INDEX` names with `*` replaced by the day (`api-logs-2026.11.01`).
    Elastic(Elastic),
}

/// Generates the traffic of `options` into `target`.
///
/// # Errors
/// When the parameters are refused, the file cannot be written or the cluster refuses.
pub async fn generate(
    config: &Config,
    options: &GenerateOptions,
    target: &Target,
) -> Result<Generated> {
    let params = traffic(options);
    let incidents = if options.incidents {
        incident_plan(&params, options.quiet_hours)
    } else {
        Vec::new()
    };
    let events = synth::generate(&params, &incidents)?;
    let span = (params.start_epoch(), params.end_epoch());
    let mut written = 0u64;
    let (target_name, labels) = match target {
        Target::File(path) => {
            write_file(path, &events, &config.fields, options.realtime)?;
            written = events.len() as u64;
            let labels = labels_path(path);
            let text = serde_json::to_string_pretty(&incidents).unwrap_or_default();
            std::fs::write(&labels, text)
                .map_err(|e| MonitorError::io(format!("writing {}", labels.display()), e))?;
            (path.display().to_string(), Some(labels))
        }
        Target::Elastic(client) => {
            let mut batch: Vec<(String, Value)> = Vec::with_capacity(BULK_EVENTS);
            let mut index = String::new();
            for (i, e) in events.iter().enumerate() {
                if options.realtime {
                    wait_until(e.timestamp).await;
                }
                let day = chrono::DateTime::from_timestamp(e.timestamp as i64, 0)
                    .unwrap_or_default()
                    .format("%Y.%m.%d")
                    .to_string();
                let this = config
                    .index
                    .split(',')
                    .next()
                    .unwrap_or("api-logs-*")
                    .replace('*', &day);
                if this != index && !batch.is_empty() {
                    written += send(client, &index, &mut batch).await?;
                }
                index = this;
                let id = format!("{}-{}-{i}", options.seed, (e.timestamp * 1000.0) as i64);
                batch.push((id, event_json(e, &config.fields)));
                if batch.len() >= BULK_EVENTS || options.realtime {
                    written += send(client, &index, &mut batch).await?;
                }
            }
            written += send(client, &index, &mut batch).await?;
            (config.index.clone(), None)
        }
    };
    Ok(Generated {
        events: written,
        incidents,
        target: target_name,
        labels,
        span,
    })
}

async fn send(client: &Elastic, index: &str, batch: &mut Vec<(String, Value)>) -> Result<u64> {
    if batch.is_empty() {
        return Ok(0);
    }
    let report = client.bulk_index(index, batch).await?;
    if let Some((id, refusal)) = report.refused.first() {
        tracing::warn!(id, %refusal, refused = report.refused.len(), "events refused by the cluster");
    }
    batch.clear();
    Ok(report.written)
}

/// `<file>.incidents.json`.
pub fn labels_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".incidents.json");
    PathBuf::from(name)
}

fn write_file(path: &Path, events: &[Event], fields: &Fields, realtime: bool) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| MonitorError::io(format!("creating {}", dir.display()), e))?;
    }
    let what = || format!("writing {}", path.display());
    let file = std::fs::File::create(path).map_err(|e| MonitorError::io(what(), e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    for e in events {
        if realtime {
            std::thread::sleep(std::time::Duration::from_secs_f64(
                (e.timestamp - crate::commands::unix_now()).max(0.0),
            ));
        }
        serde_json::to_writer(&mut out, &event_json(e, fields))
            .map_err(|e| MonitorError::io(what(), e.into()))?;
        out.write_all(b"\n")
            .map_err(|e| MonitorError::io(what(), e))?;
        if realtime {
            out.flush().map_err(|e| MonitorError::io(what(), e))?;
        }
    }
    out.flush().map_err(|e| MonitorError::io(what(), e))
}

async fn wait_until(t: f64) {
    let wait = t - crate::commands::unix_now();
    if wait > 0.0 {
        tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
    }
}
