//! Rows of a user's `SELECT` as JSON objects, on each backend, without dropping a column.
//!
//! PostgreSQL renders each row with `row_to_json`, which knows every type it has (numeric, arrays, json, uuid,
//! ranges…). MySQL and SQLite rows are converted column by column from their wire types; a column of a type with no
//! JSON counterpart becomes a string (binary data that is not UTF-8 as `0x…` hex) rather than disappearing.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sea_orm::sqlx::mysql::MySqlRow;
use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::sqlite::SqliteRow;
use sea_orm::sqlx::{self, Column, Row, TypeInfo, ValueRef};
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::watermark::Watermark;
use crate::error::{Result, StoreError};

/// Column names the wrapping query gives PostgreSQL's row JSON and timestamp.
pub(super) const ROW_COLUMN: &str = "__anomaly_row";
pub(super) const TS_COLUMN: &str = "__anomaly_ts";

fn decode_error(column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::SourceColumn {
        column: column.to_string(),
        reason: e.to_string(),
    }
}

fn number(v: f64) -> Value {
    Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number)
}

fn hex(bytes: &[u8]) -> Value {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    Value::String(s)
}

/// A decoded row: its JSON, its timestamp, and the columns whose value could not be represented (each with why),
/// which are `null` in the JSON.
#[derive(Debug)]
pub(super) struct Decoded {
    pub(super) record: Value,
    pub(super) timestamp: Watermark,
    pub(super) dropped: Vec<(String, String)>,
}

/// A PostgreSQL row of the wrapping query: its JSON and its timestamp.
pub(super) fn postgres_row(row: &PgRow, ts_column: &str) -> Result<Decoded> {
    let text: String = row
        .try_get(ROW_COLUMN)
        .map_err(|e| decode_error(ROW_COLUMN, e))?;
    let (record, dropped) = postgres_record(&text)?;
    if let Some((_, reason)) = dropped.iter().find(|(c, _)| c == ts_column) {
        return Err(decode_error(ts_column, reason));
    }
    let timestamp = postgres_watermark(row, ts_column)?;
    Ok(Decoded {
        record,
        timestamp,
        dropped,
    })
}

/// `row_to_json` text as a JSON object. A value JSON numbers cannot hold (a `NUMERIC` beyond an `f64`, such as
/// `1e309`) would fail the whole row: the object is then read column by column and such a column becomes `null`,
/// reported with the reason.
fn postgres_record(text: &str) -> Result<(Value, Vec<(String, String)>)> {
    let whole_error = match serde_json::from_str::<Value>(text) {
        Ok(record) => return Ok((record, Vec::new())),
        Err(e) => e,
    };
    let columns: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(text).map_err(|_| decode_error(ROW_COLUMN, &whole_error))?;
    let mut map = Map::with_capacity(columns.len());
    let mut dropped = Vec::new();
    for (column, raw) in columns {
        let value = match serde_json::from_str::<Value>(raw.get()) {
            Ok(value) => value,
            Err(e) => {
                dropped.push((
                    column.clone(),
                    format!("{e} (value {})", abbreviate(raw.get())),
                ));
                Value::Null
            }
        };
        map.insert(column, value);
    }
    Ok((Value::Object(map), dropped))
}

/// At most 40 characters of a value, for messages.
fn abbreviate(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(40).collect();
    if chars.next().is_some() {
        format!("{head}… ({} characters)", text.chars().count())
    } else {
        head
    }
}

fn postgres_watermark(row: &PgRow, ts_column: &str) -> Result<Watermark> {
    let col = &row.columns()[1];
    let err = |e: sqlx::Error| decode_error(ts_column, e);
    Ok(match col.type_info().name() {
        "TIMESTAMPTZ" => Watermark::Timestamp(row.try_get::<DateTime<Utc>, _>(1).map_err(err)?),
        "TIMESTAMP" => Watermark::DateTime(row.try_get::<NaiveDateTime, _>(1).map_err(err)?),
        "DATE" => Watermark::Date(row.try_get::<NaiveDate, _>(1).map_err(err)?),
        "INT2" => Watermark::Integer(row.try_get::<i16, _>(1).map_err(err)?.into()),
        "INT4" => Watermark::Integer(row.try_get::<i32, _>(1).map_err(err)?.into()),
        "INT8" => Watermark::Integer(row.try_get::<i64, _>(1).map_err(err)?),
        "FLOAT4" => Watermark::Float(row.try_get::<f32, _>(1).map_err(err)?.into()),
        "FLOAT8" => Watermark::Float(row.try_get::<f64, _>(1).map_err(err)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => {
            Watermark::Text(row.try_get::<String, _>(1).map_err(err)?)
        }
        other => return Err(unsupported_timestamp(ts_column, other)),
    })
}

fn unsupported_timestamp(column: &str, type_name: &str) -> StoreError {
    StoreError::SourceColumn {
        column: column.to_string(),
        reason: format!(
            "its type {type_name} cannot order rows; cast it in the SELECT to a timestamp, integer or text"
        ),
    }
}

/// A MySQL/MariaDB row as JSON, and the value of its timestamp column.
pub(super) fn mysql_row(row: &MySqlRow, ts_column: &str) -> Result<Decoded> {
    let mut map = Map::with_capacity(row.len());
    let mut ts = None;
    let mut dropped = Vec::new();
    for (i, col) in row.columns().iter().enumerate() {
        let name = col.name();
        let err = |e: sqlx::Error| decode_error(name, e);
        let raw = row.try_get_raw(i).map_err(err)?;
        let type_name = col.type_info().name();
        let (value, watermark) = if raw.is_null() {
            (Value::Null, None)
        } else {
            match type_name {
                "BOOLEAN" => (Value::Bool(row.try_get::<bool, _>(i).map_err(err)?), None),
                "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
                    let v = row.try_get::<i64, _>(i).map_err(err)?;
                    (Value::from(v), Some(Watermark::Integer(v)))
                }
                "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED"
                | "INT UNSIGNED" | "BIGINT UNSIGNED" => {
                    let v = row.try_get::<u64, _>(i).map_err(err)?;
                    (
                        Value::from(v),
                        i64::try_from(v).ok().map(Watermark::Integer),
                    )
                }
                "FLOAT" => {
                    let v = f64::from(row.try_get::<f32, _>(i).map_err(err)?);
                    (number(v), Some(Watermark::Float(v)))
                }
                "DOUBLE" => {
                    let v = row.try_get::<f64, _>(i).map_err(err)?;
                    (number(v), Some(Watermark::Float(v)))
                }
                "DECIMAL" => {
                    let s = row.try_get_unchecked::<String, _>(i).map_err(err)?;
                    match s.parse::<Number>() {
                        Ok(n) => (Value::Number(n), None),
                        Err(e) => {
                            dropped.push((
                                name.to_string(),
                                format!("{e} (value {})", abbreviate(&s)),
                            ));
                            (Value::Null, None)
                        }
                    }
                }
                "DATETIME" => {
                    let v = row.try_get::<NaiveDateTime, _>(i).map_err(err)?;
                    (Value::String(iso_naive(v)), Some(Watermark::DateTime(v)))
                }
                "TIMESTAMP" => {
                    let v = row.try_get::<DateTime<Utc>, _>(i).map_err(err)?;
                    (Value::String(iso_utc(v)), Some(Watermark::Timestamp(v)))
                }
                "DATE" => {
                    let v = row.try_get::<NaiveDate, _>(i).map_err(err)?;
                    (Value::String(v.to_string()), Some(Watermark::Date(v)))
                }
                "TIME" => {
                    let v = row.try_get::<NaiveTime, _>(i).map_err(err)?;
                    (Value::String(v.to_string()), None)
                }
                "JSON" => {
                    let v = row.try_get::<Value, _>(i).map_err(err)?;
                    (v, None)
                }
                "BIT" | "GEOMETRY" => {
                    let v = row.try_get_unchecked::<Vec<u8>, _>(i).map_err(err)?;
                    (hex(&v), None)
                }
                _ => {
                    // VARCHAR, CHAR, TEXT, ENUM, SET, YEAR and anything newer: its text form. Text with a binary
                    // collation (MariaDB's JSON is LONGTEXT COLLATE utf8mb4_bin) reports the same wire type as
                    // BLOB and BINARY, so bytes that are valid UTF-8 are text and others hex.
                    let v = row.try_get_unchecked::<Vec<u8>, _>(i).map_err(err)?;
                    match String::from_utf8(v) {
                        Ok(s) => {
                            let w = Watermark::Text(s.clone());
                            (Value::String(s), Some(w))
                        }
                        Err(e) => (hex(e.as_bytes()), None),
                    }
                }
            }
        };
        if name == ts_column {
            ts = Some(watermark.ok_or_else(|| unsupported_timestamp(ts_column, type_name))?);
        }
        map.insert(name.to_string(), value);
    }
    let timestamp = ts.ok_or_else(|| missing_column(ts_column))?;
    Ok(Decoded {
        record: Value::Object(map),
        timestamp,
        dropped,
    })
}

/// A SQLite row as JSON (by each value's storage class), and the value of its timestamp column.
pub(super) fn sqlite_row(row: &SqliteRow, ts_column: &str) -> Result<Decoded> {
    let mut map = Map::with_capacity(row.len());
    let mut ts = None;
    for (i, col) in row.columns().iter().enumerate() {
        let name = col.name();
        let err = |e: sqlx::Error| decode_error(name, e);
        let raw = row.try_get_raw(i).map_err(err)?;
        let storage = if raw.is_null() {
            "NULL".to_string()
        } else {
            raw.type_info().name().to_string()
        };
        let (value, watermark) = match storage.as_str() {
            "NULL" => (Value::Null, None),
            "INTEGER" => {
                let v = row.try_get_unchecked::<i64, _>(i).map_err(err)?;
                (Value::from(v), Some(Watermark::Integer(v)))
            }
            "REAL" => {
                let v = row.try_get_unchecked::<f64, _>(i).map_err(err)?;
                (number(v), Some(Watermark::Float(v)))
            }
            "BLOB" => {
                let v = row.try_get_unchecked::<Vec<u8>, _>(i).map_err(err)?;
                (hex(&v), None)
            }
            _ => {
                let v = row.try_get_unchecked::<String, _>(i).map_err(err)?;
                let w = Watermark::Text(v.clone());
                (Value::String(v), Some(w))
            }
        };
        if name == ts_column {
            ts = Some(watermark.ok_or_else(|| unsupported_timestamp(ts_column, &storage))?);
        }
        map.insert(name.to_string(), value);
    }
    let timestamp = ts.ok_or_else(|| missing_column(ts_column))?;
    Ok(Decoded {
        record: Value::Object(map),
        timestamp,
        dropped: Vec::new(),
    })
}

fn missing_column(column: &str) -> StoreError {
    StoreError::SourceColumn {
        column: column.to_string(),
        reason: "the SELECT does not return it".into(),
    }
}

fn iso_naive(v: NaiveDateTime) -> String {
    v.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
}

fn iso_utc(v: DateTime<Utc>) -> String {
    v.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
