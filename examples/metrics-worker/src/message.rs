//! The metric message on the wire, parsed with a reason for every refusal.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Longest series name accepted, in characters (the store's key limit is larger).
pub const MAX_SERIES_CHARS: usize = 255;

/// One metric point: `{"series": "cpu.web-1", "value": 0.93, "timestamp": "2026-11-01T12:00:00Z"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The series name (see [`check_series_name`]).
    pub series: String,
    /// The value (finite).
    pub value: f64,
    /// The metric's own time, when the producer sent one (RFC 3339).
    pub timestamp: Option<DateTime<Utc>>,
}

/// Why a message was refused (and sent to the dead-letter subject).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Not JSON, or not the expected object.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// `value` is NaN or infinite (or a number JSON cannot hold).
    #[error("value is not a finite number")]
    NonFinite,
    /// The series name breaks the rules of [`check_series_name`].
    #[error("bad series name: {0}")]
    BadSeries(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    series: String,
    value: serde_json::Number,
    #[serde(default)]
    timestamp: Option<String>,
}

/// A series name is usable when it is non-empty, at most [`MAX_SERIES_CHARS`] characters, and safe as the tail of a
/// NATS subject: dot-separated tokens of ASCII letters, digits, `-`, `_` and `:`, none of them empty (so no
/// spaces, wildcards `*`/`>` or control characters).
///
/// # Errors
/// What is wrong with it.
pub fn check_series_name(series: &str) -> Result<(), String> {
    if series.is_empty() {
        return Err("empty".into());
    }
    if series.chars().count() > MAX_SERIES_CHARS {
        return Err(format!("longer than {MAX_SERIES_CHARS} characters"));
    }
    if !is_subject_token_path(series) {
        return Err(format!(
            "`{}` is not subject-safe: use dot-separated tokens of letters, digits, `-`, `_` and `:`",
            series.escape_debug()
        ));
    }
    Ok(())
}

/// The share (`0..count`) a series belongs to when `count` workers split a stream: FNV-1a (64 bits) of the series
/// name's bytes, modulo `count`. Stable across processes, versions and platforms, so any producer or tool can tell
/// which worker handles a series.
pub fn partition(series: &str, count: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in series.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(count.max(1))) as u32
}

/// Whether `s` is dot-separated non-empty tokens of ASCII letters, digits, `-`, `_` and `:`.
pub(crate) fn is_subject_token_path(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
        })
}

impl MetricPoint {
    /// Parses a message body.
    ///
    /// # Errors
    /// The [`Refusal`], and the series name when the body named a usable one (for the dead-letter subject).
    pub fn parse(body: &[u8]) -> Result<MetricPoint, (Refusal, Option<String>)> {
        let wire: Wire = match serde_json::from_slice(body) {
            Ok(w) => w,
            Err(e) => return Err(Self::non_finite_or(body, Refusal::Malformed(e.to_string()))),
        };
        let named = check_series_name(&wire.series)
            .is_ok()
            .then(|| wire.series.clone());
        check_series_name(&wire.series).map_err(|e| (Refusal::BadSeries(e), None))?;
        let value = wire
            .value
            .as_f64()
            .filter(|v| v.is_finite())
            .ok_or((Refusal::NonFinite, named.clone()))?;
        let timestamp = match wire.timestamp {
            None => None,
            Some(t) => Some(
                DateTime::parse_from_rfc3339(&t)
                    .map_err(|e| {
                        (
                            Refusal::Malformed(format!("timestamp `{t}` is not RFC 3339: {e}")),
                            named.clone(),
                        )
                    })?
                    .with_timezone(&Utc),
            ),
        };
        Ok(MetricPoint {
            series: wire.series,
            value,
            timestamp,
        })
    }

    /// JSON has no NaN or infinity, but producers in other languages write them (`NaN`, `Infinity`): such a body
    /// is a [`Refusal::NonFinite`] of its series, anything else `otherwise`.
    fn non_finite_or(body: &[u8], otherwise: Refusal) -> (Refusal, Option<String>) {
        #[derive(Deserialize)]
        struct Relaxed {
            series: String,
            value: Option<f64>,
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return (otherwise, None);
        };
        if !(text.contains("NaN") || text.contains("Infinity")) {
            return (otherwise, None);
        }
        let relaxed = text
            .replace("-Infinity", "null")
            .replace("Infinity", "null")
            .replace("NaN", "null");
        match serde_json::from_str::<Relaxed>(&relaxed) {
            Ok(Relaxed {
                series,
                value: None,
            }) => (
                Refusal::NonFinite,
                check_series_name(&series).is_ok().then_some(series),
            ),
            _ => (otherwise, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_fnv1a_and_stable() {
        // FNV-1a 64 of "" is its offset basis; the others pinned so a change of hash (which would move series
        // between running workers) fails here.
        assert_eq!(partition("", u32::MAX), 1_343_537_162);
        assert_eq!(partition("cpu.web-1", 1_000), 215);
        assert_eq!(partition("cpu.web-1", 2), 1);
        assert_eq!(partition("cpu.host-0", 2), 0);
        assert_eq!(partition("anything", 1), 0);
        assert_eq!(partition("anything", 0), 0);
    }

    #[test]
    fn good_points_parse() {
        let p = MetricPoint::parse(
            br#"{"series": "cpu.web-1", "value": 0.93, "timestamp": "2026-11-01T12:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(p.series, "cpu.web-1");
        assert_eq!(p.value, 0.93);
        assert_eq!(
            p.timestamp.unwrap().to_rfc3339(),
            "2026-11-01T12:00:00+00:00"
        );
        assert_eq!(
            MetricPoint::parse(br#"{"series":"a","value":-3}"#)
                .unwrap()
                .timestamp,
            None
        );
    }

    #[test]
    fn refusals_say_why() {
        for body in [
            &br#"{"series":"cpu","value":NaN}"#[..],
            br#"{"series":"cpu","value":-Infinity}"#,
        ] {
            assert_eq!(
                MetricPoint::parse(body).unwrap_err(),
                (Refusal::NonFinite, Some("cpu".into()))
            );
        }
        type Case<'a> = (&'a [u8], fn(&Refusal) -> bool);
        let cases: [Case<'_>; 9] = [
            (b"not json", |r| matches!(r, Refusal::Malformed(_))),
            (br#"{"series":"a"}"#, |r| matches!(r, Refusal::Malformed(_))),
            (br#"{"series":"a","value":"1"}"#, |r| {
                matches!(r, Refusal::Malformed(_))
            }),
            (br#"{"series":"a","value":1,"extra":2}"#, |r| {
                matches!(r, Refusal::Malformed(_))
            }),
            (br#"{"series":"a","value":1e999}"#, |r| {
                matches!(r, Refusal::Malformed(_) | Refusal::NonFinite)
            }),
            (
                br#"{"series":"a","value":1,"timestamp":"yesterday"}"#,
                |r| matches!(r, Refusal::Malformed(_)),
            ),
            (br#"{"series":"","value":1}"#, |r| {
                matches!(r, Refusal::BadSeries(_))
            }),
            (br#"{"series":"a b","value":1}"#, |r| {
                matches!(r, Refusal::BadSeries(_))
            }),
            (br#"{"series":"a.>","value":1}"#, |r| {
                matches!(r, Refusal::BadSeries(_))
            }),
        ];
        for (body, ok) in cases {
            let (refusal, _) = MetricPoint::parse(body).unwrap_err();
            assert!(ok(&refusal), "{}: {refusal}", String::from_utf8_lossy(body));
        }
        let long = format!(r#"{{"series":"{}","value":1}}"#, "a".repeat(256));
        assert!(matches!(
            MetricPoint::parse(long.as_bytes()).unwrap_err().0,
            Refusal::BadSeries(_)
        ));
        let fine = format!(r#"{{"series":"{}","value":1}}"#, "a".repeat(255));
        assert!(MetricPoint::parse(fine.as_bytes()).is_ok());
    }

    #[test]
    fn series_names_are_subject_safe() {
        for ok in ["cpu", "cpu.web-1", "a_b:c.d"] {
            assert!(check_series_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a*", "a\n", "é"] {
            assert!(check_series_name(bad).is_err(), "{bad:?}");
        }
    }
}
