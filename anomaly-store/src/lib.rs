#![doc = include_str!("../README.md")]

mod error;
mod lazy;
mod memory;
mod persistence;
mod queue;
mod schedule;
mod sea;
mod source;
mod store;
mod types;

pub use error::{MAX_KEY_CHARS, Result, StoreError};
pub use lazy::{Connect, LazyStore};
pub use memory::InMemoryStore;
pub use queue::{AnomalyQueue, QueueConfig, QueueStats};
pub use schedule::{CLEANUP_RETRY, CleanupSchedule, CleanupStatus};
pub use sea::{SeaOrmStore, Timeouts};
pub use source::{
    DEFAULT_BATCH_SIZE, DEFAULT_STATEMENT_TIMEOUT, DroppedValue, SourceBatch, SourceRow,
    SqlDialect, SqlSource, Watermark, check_read_only_select,
};
pub use store::Store;
pub use types::{
    Anomaly, AnomalyCursor, AnomalyPage, AnomalyQuery, CleanupReport, DataSource, HistoryRecord,
    ModelMetadata, ModelVersion, QueryPattern, RetentionPolicy, SavedModel, SourceStatus,
    StoredAnomaly, redact_url, to_micros,
};
