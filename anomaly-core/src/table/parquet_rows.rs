//! Parquet rows, through the `parquet` crate's row reader (one row group decoded at a time).

use std::collections::HashMap;
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, NaiveDate};
use parquet::basic::{LogicalType, TimeUnit};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row, reader::RowIter};
use serde_json::{Map, Number, Value};

use super::table_error;
use crate::error::Result;

pub(super) struct ParquetRows {
    rows: RowIter<'static>,
    columns: Vec<String>,
    /// Top-level columns of nanosecond timestamps or times, which the row reader hands over as plain integers.
    nanos: HashMap<String, Nanos>,
}

#[derive(Debug, Clone, Copy)]
enum Nanos {
    Timestamp,
    Time,
}

impl ParquetRows {
    pub(super) fn new(file: &str, handle: File) -> Result<ParquetRows> {
        let reader = guarded(|| SerializedFileReader::new(handle).map_err(|e| e.to_string()))
            .map_err(|e| table_error(file, format!("not a readable Parquet file: {e}")))?;
        let fields = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .to_vec();
        let columns = fields.iter().map(|f| f.name().to_string()).collect();
        let nanos = fields
            .iter()
            .filter_map(|f| match f.get_basic_info().logical_type_ref() {
                Some(LogicalType::Timestamp {
                    unit: TimeUnit::NANOS,
                    ..
                }) => Some((f.name().to_string(), Nanos::Timestamp)),
                Some(LogicalType::Time {
                    unit: TimeUnit::NANOS,
                    ..
                }) => Some((f.name().to_string(), Nanos::Time)),
                _ => None,
            })
            .collect();
        Ok(ParquetRows {
            rows: reader.into_iter(),
            columns,
            nanos,
        })
    }

    pub(super) fn columns(&self) -> &[String] {
        &self.columns
    }

    pub(super) fn next_row(&mut self, row: u64) -> Result<Option<Value>, String> {
        let rows = &mut self.rows;
        match guarded(|| Ok(rows.next())) {
            Ok(None) => Ok(None),
            Ok(Some(Ok(r))) => {
                let mut v = row_value(&r);
                if !self.nanos.is_empty()
                    && let Value::Object(o) = &mut v
                {
                    for (name, unit) in &self.nanos {
                        if let Some(cell) = o.get_mut(name)
                            && let Some(n) = cell.as_i64()
                        {
                            *cell = match unit {
                                Nanos::Timestamp => {
                                    Value::String(DateTime::from_timestamp_nanos(n).to_rfc3339())
                                }
                                Nanos::Time => time_of_day(n.div_euclid(1_000_000_000)),
                            };
                        }
                    }
                }
                Ok(Some(v))
            }
            Ok(Some(Err(e))) => Err(format!("row {row}: {e}")),
            Err(e) => Err(format!("row {row}: {e}")),
        }
    }
}

/// Runs a step of the Parquet decoder, turning a panic on a corrupt file into an error: the decoder's own checks
/// do not cover every malformed page.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the file is corrupt (its decoder failed)".to_string()))
}

fn row_value(row: &Row) -> Value {
    let mut object = Map::new();
    for (name, field) in row.get_column_iter() {
        object.insert(name.clone(), field_value(field));
    }
    Value::Object(object)
}

/// A Parquet value as JSON: integers exactly, floats (NaN as null), decimals as numbers, text and bytes (lossy
/// UTF-8) as strings, dates and timestamps as RFC 3339 strings (null when out of chrono's range), times of day as
/// `HH:MM:SS` strings, groups and maps as objects, lists as arrays.
fn field_value(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(v) => Value::from(*v),
        Field::Short(v) => Value::from(*v),
        Field::Int(v) => Value::from(*v),
        Field::Long(v) => Value::from(*v),
        Field::UByte(v) => Value::from(*v),
        Field::UShort(v) => Value::from(*v),
        Field::UInt(v) => Value::from(*v),
        Field::ULong(v) => Value::from(*v),
        Field::Float16(v) => float(v.to_f64()),
        Field::Float(v) => float(f64::from(*v)),
        Field::Double(v) => float(*v),
        Field::Decimal(d) => decimal(d.data(), d.scale()),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => Value::String(String::from_utf8_lossy(b.data()).into_owned()),
        Field::Date(days) => NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|epoch| {
                epoch.checked_add_signed(chrono::Duration::try_days(i64::from(*days))?)
            })
            .map_or(Value::Null, |d| Value::String(d.to_string())),
        Field::TimeMillis(ms) => time_of_day(i64::from(*ms) / 1000),
        Field::TimeMicros(us) => time_of_day(us / 1_000_000),
        Field::TimestampMillis(ms) => DateTime::from_timestamp_millis(*ms)
            .map_or(Value::Null, |t| Value::String(t.to_rfc3339())),
        Field::TimestampMicros(us) => DateTime::from_timestamp_micros(*us)
            .map_or(Value::Null, |t| Value::String(t.to_rfc3339())),
        Field::Group(row) => row_value(row),
        Field::ListInternal(list) => {
            Value::Array(list.elements().iter().map(field_value).collect())
        }
        Field::MapInternal(map) => {
            let mut object = Map::new();
            for (k, v) in map.entries() {
                let key = match field_value(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                object.insert(key, field_value(v));
            }
            Value::Object(object)
        }
    }
}

fn float(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// A decimal's unscaled big-endian two's-complement bytes over 10^scale; null beyond 128 bits.
fn decimal(bytes: &[u8], scale: i32) -> Value {
    if bytes.is_empty() || bytes.len() > 16 {
        return Value::Null;
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut v: i128 = if negative { -1 } else { 0 };
    for &b in bytes {
        v = (v << 8) | i128::from(b);
    }
    float(v as f64 / 10f64.powi(scale))
}

fn time_of_day(seconds: i64) -> Value {
    let s = seconds.rem_euclid(86_400);
    Value::String(format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60))
}
