#![doc = include_str!("../README.md")]

mod blocking;
mod error;
mod memory;
mod sea;
mod store;
mod types;

pub use blocking::BlockingStore;
pub use error::{MAX_KEY_CHARS, Result, StoreError};
pub use memory::InMemoryStore;
pub use sea::SeaOrmStore;
pub use store::Store;
pub use types::{
    Anomaly, AnomalyCursor, AnomalyPage, AnomalyQuery, CleanupReport, DataSource, HistoryRecord,
    ModelInfo, ModelMetadata, QueryPattern, RetentionPolicy, SavedModel, SourceStatus,
    StoredAnomaly, redact_url, to_micros,
};
