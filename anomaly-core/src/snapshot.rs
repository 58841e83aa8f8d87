//! The one serialised form of every model: a tagged, versioned [`Snapshot`].
//!
//! A snapshot is JSON: `{"format": "anomaly-snapshot", "version": 2, "model": {"kind": "...", ...}}`. Floats are
//! written so they read back to the same bits, so a restored model scores bit-identically. This is what the store
//! persists and what Python pickles, so a model saved from one side loads on the other.
//!
//! Versions: 2 gave record models field roles (a timestamp no longer carries its epoch seconds as a column). A
//! version 1 snapshot still loads and scores as it did: its record model keeps the layout it was trained with.

use serde::{Deserialize, Serialize};

use crate::engine::RecordModel;
use crate::error::{Error, Result};
use crate::forest::IsolationForest;
use crate::logs::LogDetector;
use crate::stream::{Ema, MovingAverage, StreamingIsolationForest};

/// The value of the `format` field.
pub const SNAPSHOT_FORMAT: &str = "anomaly-snapshot";
/// The snapshot version this build writes.
pub const SNAPSHOT_VERSION: u32 = 2;
/// The oldest snapshot version this build reads.
pub const OLDEST_SNAPSHOT_VERSION: u32 = 1;

/// Any model of this crate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // one model per snapshot: size is not a concern
pub enum Model {
    /// A fitted isolation forest.
    IsolationForest(IsolationForest),
    /// A moving-average detector with its window.
    MovingAverage(MovingAverage),
    /// An EMA detector with its state.
    Ema(Ema),
    /// A streaming isolation forest with its buffers and forest.
    StreamingIsolationForest(StreamingIsolationForest),
    /// A record model: learned schema and forest.
    RecordModel(RecordModel),
    /// A log detector: its template miner and each template's history.
    LogDetector(LogDetector),
}

impl Model {
    /// The model's kind, as written in the snapshot.
    pub fn kind(&self) -> &'static str {
        match self {
            Model::IsolationForest(_) => "isolation_forest",
            Model::MovingAverage(_) => "moving_average",
            Model::Ema(_) => "ema",
            Model::StreamingIsolationForest(_) => "streaming_isolation_forest",
            Model::RecordModel(_) => "record_model",
            Model::LogDetector(_) => "log_detector",
        }
    }

    fn check(&self) -> Result<(), String> {
        match self {
            Model::IsolationForest(m) => m.check(),
            Model::MovingAverage(m) => m.check(),
            Model::Ema(m) => m.check(),
            Model::StreamingIsolationForest(m) => m.check(),
            Model::RecordModel(m) => m.check(),
            // Checked as it is read (`TryFrom` of its state).
            Model::LogDetector(_) => Ok(()),
        }
    }
}

/// A versioned, self-describing serialised model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always [`SNAPSHOT_FORMAT`].
    pub format: String,
    /// The version it was written with.
    pub version: u32,
    /// The model.
    pub model: Model,
}

#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

impl Snapshot {
    /// Wraps a model in a snapshot of the current version.
    pub fn new(model: Model) -> Self {
        Snapshot {
            format: SNAPSHOT_FORMAT.to_string(),
            version: SNAPSHOT_VERSION,
            model,
        }
    }

    /// Serialises to bytes (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Restores a snapshot and checks the model's structure.
    ///
    /// # Errors
    /// [`Error::UnsupportedSnapshot`] when the bytes are not a snapshot, carry another format or an unknown version,
    /// or describe an inconsistent model.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let unsupported = |reason: String| Error::UnsupportedSnapshot { reason };
        let header: Header = serde_json::from_slice(bytes)
            .map_err(|e| unsupported(format!("not a snapshot: {e}")))?;
        if header.format != SNAPSHOT_FORMAT {
            return Err(unsupported(format!("unknown format `{}`", header.format)));
        }
        if !(OLDEST_SNAPSHOT_VERSION..=SNAPSHOT_VERSION).contains(&header.version) {
            return Err(unsupported(format!(
                "version {} (this build reads versions {OLDEST_SNAPSHOT_VERSION} to {SNAPSHOT_VERSION})",
                header.version
            )));
        }
        let mut snapshot: Snapshot = serde_json::from_slice(bytes)
            .map_err(|e| unsupported(format!("corrupt snapshot: {e}")))?;
        if header.version == 1
            && let Model::RecordModel(m) = &mut snapshot.model
        {
            m.upgrade_from_v1();
        }
        snapshot
            .model
            .check()
            .map_err(|e| unsupported(format!("inconsistent model: {e}")))?;
        Ok(snapshot)
    }
}

macro_rules! snapshot_conversions {
    ($($ty:ident => $variant:ident),* $(,)?) => {$(
        impl From<$ty> for Model {
            fn from(m: $ty) -> Model {
                Model::$variant(m)
            }
        }

        impl $ty {
            /// Serialises this model as a [`Snapshot`].
            pub fn to_snapshot_bytes(&self) -> Vec<u8> {
                Snapshot::new(Model::$variant(self.clone())).to_bytes()
            }

            /// Restores this model from [`Snapshot`] bytes.
            ///
            /// # Errors
            /// [`Error::UnsupportedSnapshot`] for bytes that are not a valid snapshot of this kind of model.
            pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<Self> {
                match Snapshot::from_bytes(bytes)?.model {
                    Model::$variant(m) => Ok(m),
                    other => Err(Error::UnsupportedSnapshot {
                        reason: format!("snapshot holds a {} model", other.kind()),
                    }),
                }
            }
        }
    )*};
}

snapshot_conversions!(
    IsolationForest => IsolationForest,
    MovingAverage => MovingAverage,
    Ema => Ema,
    StreamingIsolationForest => StreamingIsolationForest,
    RecordModel => RecordModel,
    LogDetector => LogDetector,
);
