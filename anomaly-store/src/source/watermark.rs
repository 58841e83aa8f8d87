//! [`Watermark`]: how far a [`SqlSource`](super::SqlSource) has read, typed like its timestamp column.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, StoreError};

/// The timestamp-column value of the last row a [`SqlSource`](super::SqlSource) returned. The next fetch asks for
/// rows strictly after it, bound as the same SQL type the column produced, so comparisons happen in the database's
/// own ordering.
///
/// It serialises to tagged JSON (`{"timestamp": "2026-11-21T10:00:00.123456Z"}`, `{"integer": 42}`), which is
/// what [`DataSource::watermark`](crate::DataSource::watermark) holds between polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Watermark {
    /// An integer column (epoch seconds or milliseconds, a sequence).
    Integer(i64),
    /// A floating-point column.
    Float(f64),
    /// A time-zone-aware column (`TIMESTAMPTZ`, MySQL `TIMESTAMP`).
    Timestamp(DateTime<Utc>),
    /// A column without a time zone (`TIMESTAMP WITHOUT TIME ZONE`, MySQL `DATETIME`).
    DateTime(NaiveDateTime),
    /// A `DATE` column.
    Date(NaiveDate),
    /// A text column (ISO-8601 strings in SQLite), compared as the database compares text.
    Text(String),
}

impl Watermark {
    /// The tagged JSON form stored in [`DataSource::watermark`](crate::DataSource::watermark).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Reads the tagged JSON form back; `Null` (a source never polled) is `None`.
    ///
    /// ```
    /// use anomaly_store::Watermark;
    ///
    /// let w = Watermark::Integer(1_700_000_000);
    /// assert_eq!(Watermark::from_json(&w.to_json())?, Some(w));
    /// assert_eq!(Watermark::from_json(&serde_json::Value::Null)?, None);
    /// # Ok::<(), anomaly_store::StoreError>(())
    /// ```
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for JSON that is not a watermark.
    pub fn from_json(value: &Value) -> Result<Option<Self>> {
        if value.is_null() {
            return Ok(None);
        }
        serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| StoreError::InvalidInput {
                field: "watermark",
                reason: e.to_string(),
            })
    }
}

impl std::fmt::Display for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Watermark::Integer(v) => write!(f, "{v}"),
            Watermark::Float(v) => write!(f, "{v}"),
            Watermark::Timestamp(v) => write!(f, "{}", v.to_rfc3339()),
            Watermark::DateTime(v) => write!(f, "{v}"),
            Watermark::Date(v) => write!(f, "{v}"),
            Watermark::Text(v) => f.write_str(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Watermark;
    use chrono::{NaiveDate, TimeZone, Utc};

    #[test]
    fn every_kind_round_trips_through_json() {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
            + chrono::Duration::microseconds(123_456);
        let day = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        for w in [
            Watermark::Integer(-5),
            Watermark::Float(1.5),
            Watermark::Timestamp(t),
            Watermark::DateTime(t.naive_utc()),
            Watermark::Date(day),
            Watermark::Text("2026-11-21T10:00:00Z".into()),
        ] {
            assert_eq!(Watermark::from_json(&w.to_json()).unwrap(), Some(w));
        }
        assert!(Watermark::from_json(&serde_json::json!({"bogus": 1})).is_err());
    }
}
