//! From schemaless JSON records to what the detectors consume.
//!
//! - [`columns`]: records held column by column (a data frame's columns), vectorised without a JSON object per
//!   record.
//! - [`flatten`]: a record (a JSON object) becomes a list of `(dotted.path, leaf)` pairs.
//! - [`kind`]: each leaf's observed type (number, boolean, date/time, category, null), with numeric and date/time
//!   strings recognised.
//! - [`hashing`]: signed feature hashing with MurmurHash3, as scikit-learn's `FeatureHasher`.
//! - [`role`]: what each field is for (measurement, category, timestamp, identifier, text, ignore), inferred from
//!   training records or pinned.
//! - [`vectorizer`]: the learned schema that turns records into fixed-width feature vectors and explains them in
//!   field names.

pub mod columns;
pub mod flatten;
pub mod hashing;
pub mod kind;
pub mod role;
pub mod vectorizer;
