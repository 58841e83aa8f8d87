//! Reading the fields the windowing needs out of one JSON event.

use crate::records::flatten::type_name;
use serde_json::Value;

use super::WindowParams;
use crate::error::{Error, Result};
use crate::records::flatten::{Leaf, Limits, flatten};
use crate::records::kind::{Typed, interpret_str};

/// 0001-01-01T00:00:00Z, the first instant RFC 3339 can name.
const FIRST_SECOND: f64 = -62_135_596_800.0;
/// 10000-01-01T00:00:00Z, just past the last instant RFC 3339 can name.
const PAST_LAST_SECOND: f64 = 253_402_300_800.0;

/// What one event contributes to its window.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Observation {
    pub(super) service: String,
    pub(super) timestamp: f64,
    pub(super) error: bool,
    pub(super) client_error: bool,
    pub(super) latency: Option<f64>,
    pub(super) extra: Vec<(String, f64)>,
    /// The value of each category field, in the order of the parameters; `None` when missing or `null`.
    pub(super) categories: Vec<Option<String>>,
}

/// Reads `event` as `params` say.
///
/// The service must be a non-empty string and the timestamp epoch seconds (a number or numeric string) or a
/// date/time string between the years 1 and 9999. Latency and status may be missing or `null`; when present they
/// must be numbers or numeric strings.
pub(super) fn observe(params: &WindowParams, event: &Value) -> Result<Observation> {
    if !event.is_object() {
        return Err(invalid(format!(
            "expected a JSON object, got {}",
            type_name(event)
        )));
    }
    let service = match lookup(event, &params.service_field) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) => return Err(missing(&params.service_field)),
        Some(other) => {
            return Err(invalid(format!(
                "field `{}` must be a non-empty string, got {other}",
                params.service_field
            )));
        }
    };
    let timestamp = timestamp(event, &params.timestamp_field)?;
    let latency = number(event, &params.latency_field)?;
    let status = number(event, &params.status_field)?;
    let error = status.is_some_and(|s| s >= params.error_status_at_least);
    let client_error = status.is_some_and(|s| (400.0..params.error_status_at_least).contains(&s));
    let categories = params
        .category_fields
        .iter()
        .map(|field| category(event, field))
        .collect::<Result<Vec<_>>>()?;
    let extra = match &params.extra_fields {
        Some(fields) => {
            let mut extra = Vec::with_capacity(fields.len());
            for field in fields {
                if let Some(v) = number(event, field)? {
                    extra.push((field.clone(), v));
                }
            }
            extra
        }
        None => {
            let own = [
                params.service_field.as_str(),
                &params.timestamp_field,
                &params.latency_field,
                &params.status_field,
            ];
            flatten(event, &Limits::default())?
                .into_iter()
                .filter_map(|(path, leaf)| match leaf {
                    Leaf::Number(v) if !own.contains(&path.as_ref()) => {
                        Some((path.into_owned(), v))
                    }
                    _ => None,
                })
                .collect()
        }
    };
    Ok(Observation {
        service,
        timestamp,
        error,
        client_error,
        latency,
        extra,
        categories,
    })
}

/// A category: a string, or a number or boolean as written; `None` when missing or `null`.
fn category(event: &Value, field: &str) -> Result<Option<String>> {
    match lookup(event, field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(other) => Err(invalid(format!(
            "field `{field}` must be a string, number or boolean, got {}",
            type_name(other)
        ))),
    }
}

fn timestamp(event: &Value, field: &str) -> Result<f64> {
    let t = match lookup(event, field) {
        None | Some(Value::Null) => return Err(missing(field)),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => match interpret_str(s) {
            Typed::Number(v) => v,
            Typed::DateTime(m) => m.epoch_seconds,
            _ => {
                return Err(invalid(format!(
                    "field `{field}`: `{s}` is neither epoch seconds nor a date/time"
                )));
            }
        },
        Some(other) => {
            return Err(invalid(format!(
                "field `{field}` must be epoch seconds or a date/time string, got {}",
                type_name(other)
            )));
        }
    };
    if (FIRST_SECOND..PAST_LAST_SECOND).contains(&t) {
        Ok(t)
    } else {
        Err(invalid(format!(
            "field `{field}`: {t} epoch seconds is outside the years 1 to 9999"
        )))
    }
}

/// A number or numeric string; `None` when missing or `null`.
fn number(event: &Value, field: &str) -> Result<Option<f64>> {
    match lookup(event, field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => match interpret_str(s) {
            Typed::Number(v) => Ok(Some(v)),
            _ => Err(invalid(format!("field `{field}`: `{s}` is not a number"))),
        },
        Some(other) => Err(invalid(format!(
            "field `{field}` must be a number, got {}",
            type_name(other)
        ))),
    }
}

/// The value at a dotted `path`: a key equal to the whole path, or a key equal to a dotted prefix whose value is
/// an object holding the rest.
pub(super) fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let Value::Object(map) = value else {
        return None;
    };
    if let Some(found) = map.get(path) {
        return Some(found);
    }
    path.match_indices('.').find_map(|(i, _)| {
        map.get(&path[..i])
            .filter(|inner| inner.is_object())
            .and_then(|inner| lookup(inner, &path[i + 1..]))
    })
}

fn missing(field: &str) -> Error {
    invalid(format!("missing field `{field}`"))
}

fn invalid(reason: String) -> Error {
    Error::InvalidRecord { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(params: &WindowParams, event: Value) -> String {
        match observe(params, &event) {
            Err(Error::InvalidRecord { reason }) => reason,
            other => panic!("{event}: {other:?}"),
        }
    }

    #[test]
    fn reads_numbers_strings_and_dates() {
        let p = WindowParams::new();
        let o = observe(
            &p,
            &json!({"service": "api", "timestamp": "2024-03-05T14:00:00Z", "response_time_ms": "12.5",
                    "status": "503", "bytes": 100, "user": {"age": 30, "name": "x"}, "ok": true, "tags": [1, 3]}),
        )
        .unwrap();
        assert_eq!(o.service, "api");
        assert_eq!(o.timestamp, 1_709_647_200.0);
        assert_eq!(o.latency, Some(12.5));
        assert!(o.error);
        let extra: Vec<&str> = o.extra.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            extra,
            [
                "bytes",
                "tags.len",
                "tags.min",
                "tags.max",
                "tags.mean",
                "user.age"
            ]
        );

        let o = observe(
            &p,
            &json!({"service": "api", "timestamp": 1_700_000_000.5, "status": 404}),
        )
        .unwrap();
        assert_eq!(
            (o.timestamp, o.latency, o.error),
            (1_700_000_000.5, None, false)
        );
        let o = observe(&p, &json!({"service": "a", "timestamp": "1700000000"})).unwrap();
        assert_eq!(o.timestamp, 1_700_000_000.0);
    }

    #[test]
    fn nested_fields_and_explicit_extras() {
        let p = WindowParams::new()
            .service_field("svc.name")
            .timestamp_field("time")
            .latency_field("http.duration")
            .status_field("http.code")
            .error_status_at_least(400.0)
            .extra_fields(["http.bytes", "missing"]);
        let o = observe(
            &p,
            &json!({"svc": {"name": "api"}, "time": 5, "http": {"duration": 7, "code": 404, "bytes": "10"}, "n": 3}),
        )
        .unwrap();
        assert_eq!(
            (o.service.as_str(), o.timestamp, o.latency, o.error),
            ("api", 5.0, Some(7.0), true)
        );
        assert_eq!(o.extra, [("http.bytes".to_owned(), 10.0)]);
        // A key containing dots is found as is.
        assert!(lookup(&json!({"a.b": 1}), "a.b").is_some());
        assert!(lookup(&json!({"a": {"b.c": 1}}), "a.b.c").is_some());
        assert!(lookup(&json!({"a": 1}), "a.b").is_none());
    }

    #[test]
    fn invalid_records_name_the_field() {
        let p = WindowParams::new();
        assert!(reason(&p, json!([1])).contains("JSON object"));
        assert!(reason(&p, json!({"timestamp": 1})).contains("`service`"));
        assert!(reason(&p, json!({"service": "", "timestamp": 1})).contains("`service`"));
        assert!(reason(&p, json!({"service": 3, "timestamp": 1})).contains("`service`"));
        assert!(reason(&p, json!({"service": "a"})).contains("`timestamp`"));
        assert!(reason(&p, json!({"service": "a", "timestamp": null})).contains("`timestamp`"));
        assert!(
            reason(&p, json!({"service": "a", "timestamp": "yesterday"})).contains("`timestamp`")
        );
        assert!(reason(&p, json!({"service": "a", "timestamp": ""})).contains("`timestamp`"));
        assert!(reason(&p, json!({"service": "a", "timestamp": true})).contains("`timestamp`"));
        assert!(reason(&p, json!({"service": "a", "timestamp": 1e15})).contains("`timestamp`"));
        assert!(
            reason(
                &p,
                json!({"service": "a", "timestamp": 1, "status": "oops"})
            )
            .contains("`status`")
        );
        assert!(
            reason(
                &p,
                json!({"service": "a", "timestamp": 1, "response_time_ms": [1]})
            )
            .contains("`response_time_ms`")
        );
    }
}
