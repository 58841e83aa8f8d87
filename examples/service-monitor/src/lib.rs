//! `service-monitor`: watches microservices through their API logs.
//!
//! ```text
//!   Elasticsearch / OpenSearch (point in time + search_after)  ─┐
//!   or an NDJSON file (--input)                                  ├─► windows per service (WINDOW_SECONDS):
//!                                                                │   count, 5xx and 4xx rates, latency p50/p95/p99,
//!                                                                │   new endpoints and methods, hour and weekday
//!                                                                ▼
//!   record engine: a model per service, versioned in the store (SQLite by default); flagged windows never learnt,
//!   drift retrains ─► verdict + explanation in field names ─► AlertRule (streak, cool-down) ─► log + webhook
//!                                                           └─► anomaly documents: `_bulk` into api-anomalies
//!                                                               with deterministic ids, or the store
//! ```
//!
//! Commands (the binary parses, [`commands`] runs): `collect` copies a time range of events to an NDJSON file,
//! `train` learns a model per service from a file, `monitor` reads new events every `MONITOR_INTERVAL_SECONDS`,
//! `generate` writes labelled traffic ([`generate`]), `report` draws the charts ([`report`]), `all` chains them.

pub mod anomalies;
pub mod commands;
mod config;
pub mod context;
pub mod elastic;
mod error;
pub mod fields;
pub mod generate;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod report;
pub mod source;
pub mod state;

pub use config::Config;
pub use context::Context;
pub use error::{MonitorError, Result};
