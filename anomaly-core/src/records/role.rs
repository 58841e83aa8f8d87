//! What each field of a record is for: its [`FieldRole`], decided from the training records by the rules below or
//! pinned by the user.
//!
//! | role | columns | recognised from training data when |
//! | --- | --- | --- |
//! | `measurement` | the value, missing | numbers and booleans (the default for them) |
//! | `category` | hashed buckets, frequency, missing | strings with repeated values (the default for them) |
//! | `timestamp` | hour of day and day of week on the unit circle, missing | date/time strings; numbers named like a time (`…_at`, `…time…`, `…date…`, `ts`) that all lie in the Unix epoch range of 2000–2100, in seconds or milliseconds |
//! | `identifier` | none: kept in the record and its explanation, not scored | UUIDs (90 % of values); strings with one value per distinct record (95 % distinct) in a word or two; whole numbers with one value per distinct record (95 %) that form a sequence: they fill 90 % of their range (1, 2, 3, …), or rise from record to record in 95 % of cases (an auto-increment key, sampled or not); values named like an identifier (`id`, `…_id`, `…Id`, `uuid`, `guid`) at least half of them distinct |
//! | `text` | its length in characters, missing | strings with one value per distinct record (95 % distinct) of three words or more on average |
//! | `ignore` | none, not even in explanations | only when pinned |
//!
//! A timestamp says *when* in the day and the week a record came, not where it lies on the time line: a time line
//! only grows, so every new record would look later than everything learnt. Uniqueness is judged over distinct
//! records, so a result that returns the same rows call after call does not hide its identifiers. A field seen
//! with a value in fewer than [`MIN_EVIDENCE`] distinct records keeps the default of its kind. The rule that
//! decided each field's role is kept with the field ([`FieldSpec::rule`](super::vectorizer::FieldSpec::rule)).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::kind::FieldKind;
use crate::error::{Error, Result};

/// What a field is for, and so how it is encoded. See the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldRole {
    /// A quantity: its value is a column.
    Measurement,
    /// A label from a set of repeated values: hashed into buckets, with its training frequency.
    Category,
    /// A point in time: its hour of day and day of week.
    Timestamp,
    /// Names the record (an id, a UUID, a key): not scored, kept in the explanation.
    Identifier,
    /// Free text: its length.
    Text,
    /// Left out entirely.
    Ignore,
}

impl FieldRole {
    /// Every role, in documentation order.
    pub const ALL: [FieldRole; 6] = [
        FieldRole::Measurement,
        FieldRole::Category,
        FieldRole::Timestamp,
        FieldRole::Identifier,
        FieldRole::Text,
        FieldRole::Ignore,
    ];

    /// The role's name: `measurement`, `category`, `timestamp`, `identifier`, `text` or `ignore`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FieldRole::Measurement => "measurement",
            FieldRole::Category => "category",
            FieldRole::Timestamp => "timestamp",
            FieldRole::Identifier => "identifier",
            FieldRole::Text => "text",
            FieldRole::Ignore => "ignore",
        }
    }

    /// Whether the field gives the model columns.
    pub fn is_scored(&self) -> bool {
        !matches!(self, FieldRole::Identifier | FieldRole::Ignore)
    }

    /// The role a field of `kind` has when nothing else decides it.
    pub fn default_for(kind: FieldKind) -> FieldRole {
        match kind {
            FieldKind::Category => FieldRole::Category,
            FieldKind::DateTime => FieldRole::Timestamp,
            FieldKind::Number | FieldKind::Bool | FieldKind::Null => FieldRole::Measurement,
        }
    }
}

impl fmt::Display for FieldRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FieldRole {
    type Err = Error;

    /// Parses a role's name (case-insensitive, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        FieldRole::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| {
                Error::invalid(
                    "field role",
                    format!(
                        "`{t}` is not one of {}",
                        FieldRole::ALL.map(|r| r.as_str()).join(", ")
                    ),
                )
            })
    }
}

/// Roles pinned by the user, by field path (dotted, as records flatten).
pub type FieldRoles = BTreeMap<String, FieldRole>;

/// Parses `path=role` pairs separated by commas (`id=identifier, note=ignore`), as environment variables carry them.
///
/// ```
/// use anomaly_core::records::role::{FieldRole, parse_field_roles};
/// let pins = parse_field_roles("id=identifier, customer.note = ignore")?;
/// assert_eq!(pins["customer.note"], FieldRole::Ignore);
/// # Ok::<(), anomaly_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] naming the pair that has no `=`, an empty path or an unknown role.
pub fn parse_field_roles(text: &str) -> Result<FieldRoles> {
    let mut out = FieldRoles::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (path, role) = pair
            .split_once('=')
            .ok_or_else(|| Error::invalid("field roles", format!("`{pair}` is not `path=role`")))?;
        let path = path.trim();
        if path.is_empty() {
            return Err(Error::invalid(
                "field roles",
                format!("`{pair}` has no field path"),
            ));
        }
        out.insert(path.to_string(), role.parse()?);
    }
    Ok(out)
}

/// Fewest distinct records with a value before a field's role is inferred beyond its kind's default.
pub const MIN_EVIDENCE: usize = 20;
/// Share of distinct values (per distinct record) above which a field has one value per record.
const UNIQUE_SHARE: f64 = 0.95;
/// Share of distinct values above which a field named like an identifier is one.
const NAMED_UNIQUE_SHARE: f64 = 0.5;
/// Share of its `min..=max` range a set of distinct whole numbers must fill to be a sequence.
const DENSE_SHARE: f64 = 0.9;
/// Share of record-to-record steps that must rise for distinct whole numbers to be a sequence.
const RISING_SHARE: f64 = 0.95;
/// Share of values shaped like UUIDs that makes a field of UUIDs.
const UUID_SHARE: f64 = 0.9;
/// Mean words per value from which unique strings are free text rather than names.
const TEXT_WORDS: f64 = 3.0;
/// The Unix epoch range (2000-01-01 to 2100-01-01) in which numbers named like a time are timestamps.
const EPOCH_RANGE: (f64, f64) = (946_684_800.0, 4_102_444_800.0);

/// What training saw of one field, for [`infer`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Evidence {
    /// Distinct records in which the field had a non-null value.
    pub(crate) present_distinct: usize,
    /// Distinct non-null values (as tokens).
    pub(crate) distinct_values: usize,
    /// Non-null numeric values, and how many were whole numbers.
    pub(crate) numbers: usize,
    pub(crate) integers: usize,
    /// Smallest and largest numeric value.
    pub(crate) min: f64,
    pub(crate) max: f64,
    /// Steps from one distinct record's number to the next, the rising ones, and the last number.
    pub(crate) steps: usize,
    pub(crate) rising: usize,
    pub(crate) last: Option<f64>,
    /// String values, those shaped like UUIDs, and their words in all.
    pub(crate) strings: usize,
    pub(crate) uuids: usize,
    pub(crate) words: usize,
}

impl Evidence {
    /// A number of a distinct record, in training order (for the sequence rule).
    pub(crate) fn step(&mut self, v: f64) {
        if let Some(last) = self.last {
            self.steps += 1;
            if v > last {
                self.rising += 1;
            }
        }
        self.last = Some(v);
    }

    pub(crate) fn number(&mut self, v: f64) {
        if self.numbers == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.numbers += 1;
        if v.fract() == 0.0 {
            self.integers += 1;
        }
    }

    pub(crate) fn string(&mut self, s: &str) {
        self.strings += 1;
        if is_uuid(s) {
            self.uuids += 1;
        }
        self.words += s.split_whitespace().count();
    }
}

/// Whether `s` is a UUID: 32 hexadecimal digits, bare or in the 8-4-4-4-12 layout (with optional braces).
fn is_uuid(s: &str) -> bool {
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    let b = s.as_bytes();
    match b.len() {
        32 => b.iter().all(u8::is_ascii_hexdigit),
        36 => b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

/// The last segment of a dotted path.
fn name_of(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Whether a field's name says it names records: `id`, `uuid`, `guid`, `pk`, or ending in `_id`, `-id`, `Id`,
/// `ID`, `_uuid`.
pub(crate) fn named_like_identifier(path: &str) -> bool {
    let name = name_of(path);
    let lower = name.to_ascii_lowercase();
    matches!(lower.as_str(), "id" | "uuid" | "guid" | "pk")
        || ["_id", "-id", "_uuid", "-uuid", "_guid"]
            .iter()
            .any(|s| lower.ends_with(s))
        || (name.len() > 2
            && (name.ends_with("Id") || name.ends_with("ID"))
            && name[..name.len() - 2]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_lowercase()))
}

/// Whether a field's name says it holds a time: `ts`, `time`, `timestamp`, `date`, or ending in `_at`, `At`, or
/// containing `time` or `date`.
fn named_like_time(path: &str) -> bool {
    let name = name_of(path);
    let lower = name.to_ascii_lowercase();
    lower == "ts"
        || lower.ends_with("_at")
        || lower.ends_with("_ts")
        || (name.len() > 2 && name.ends_with("At"))
        || lower.contains("time")
        || lower.contains("date")
}

fn pct(share: f64) -> String {
    format!("{:.0}%", 100.0 * share)
}

/// The role of the field at `path` whose values had the dominant `kind` in training, and the rule that decided it.
pub(crate) fn infer(path: &str, kind: FieldKind, e: &Evidence) -> (FieldRole, String) {
    let by_kind = |rule: &str| (FieldRole::default_for(kind), rule.to_string());
    match kind {
        FieldKind::Null => return by_kind("only nulls seen"),
        FieldKind::Bool => return by_kind("booleans"),
        FieldKind::DateTime => return by_kind("date/time values"),
        FieldKind::Number | FieldKind::Category => {}
    }
    if e.present_distinct < MIN_EVIDENCE {
        return by_kind(&format!(
            "too few records to tell ({} with a value): by its kind",
            e.present_distinct
        ));
    }
    let distinct = e.distinct_values as f64 / e.present_distinct as f64;
    let named_id = named_like_identifier(path);
    if kind == FieldKind::Category {
        let strings = e.strings.max(1) as f64;
        if e.uuids as f64 >= UUID_SHARE * strings {
            return (
                FieldRole::Identifier,
                format!("UUIDs ({} of values)", pct(e.uuids as f64 / strings)),
            );
        }
        let words = e.words as f64 / strings;
        if distinct >= UNIQUE_SHARE {
            return if words >= TEXT_WORDS {
                (
                    FieldRole::Text,
                    format!(
                        "free text: {} distinct, {words:.1} words on average",
                        pct(distinct)
                    ),
                )
            } else {
                (
                    FieldRole::Identifier,
                    format!("unique strings: {} distinct", pct(distinct)),
                )
            };
        }
        if named_id && distinct >= NAMED_UNIQUE_SHARE {
            return (
                FieldRole::Identifier,
                format!("named like an identifier, {} distinct", pct(distinct)),
            );
        }
        return (
            FieldRole::Category,
            format!(
                "repeated values: {} distinct in {} records",
                e.distinct_values, e.present_distinct
            ),
        );
    }
    // Numbers.
    if named_like_time(path) && e.numbers > 0 {
        for (unit, scale) in [("seconds", 1.0), ("milliseconds", 1_000.0)] {
            if e.min >= EPOCH_RANGE.0 * scale && e.max <= EPOCH_RANGE.1 * scale {
                return (
                    FieldRole::Timestamp,
                    format!("numbers named like a time, Unix epoch {unit}"),
                );
            }
        }
    }
    let whole = e.numbers > 0 && e.integers == e.numbers;
    if whole && named_id && distinct >= NAMED_UNIQUE_SHARE {
        return (
            FieldRole::Identifier,
            format!(
                "whole numbers named like an identifier, {} distinct",
                pct(distinct)
            ),
        );
    }
    if whole && distinct >= UNIQUE_SHARE {
        let span = e.max - e.min + 1.0;
        let filled = e.distinct_values as f64 / span;
        if filled >= DENSE_SHARE {
            return (
                FieldRole::Identifier,
                format!(
                    "a sequence of distinct whole numbers: {} distinct, filling {} of {}–{}",
                    pct(distinct),
                    pct(filled.min(1.0)),
                    e.min,
                    e.max
                ),
            );
        }
        let rising = e.rising as f64 / e.steps.max(1) as f64;
        if e.steps > 0 && rising >= RISING_SHARE {
            return (
                FieldRole::Identifier,
                format!(
                    "a sequence of distinct whole numbers: {} distinct, rising from record to record in {} of cases",
                    pct(distinct),
                    pct(rising)
                ),
            );
        }
    }
    (FieldRole::Measurement, "numbers".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(values: impl IntoIterator<Item = f64>) -> Evidence {
        let mut e = Evidence::default();
        let mut seen = std::collections::BTreeSet::new();
        for v in values {
            e.number(v);
            e.step(v);
            e.present_distinct += 1;
            seen.insert(v.to_bits());
        }
        e.distinct_values = seen.len();
        e
    }

    fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> Evidence {
        let mut e = Evidence::default();
        let mut seen = std::collections::BTreeSet::new();
        for v in values {
            e.string(v);
            e.present_distinct += 1;
            seen.insert(v.to_string());
        }
        e.distinct_values = seen.len();
        e
    }

    #[test]
    fn roles_parse_and_print_by_name() {
        for r in FieldRole::ALL {
            assert_eq!(r.as_str().parse::<FieldRole>().unwrap(), r);
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(
            " Identifier ".parse::<FieldRole>().unwrap(),
            FieldRole::Identifier
        );
        let err = "id".parse::<FieldRole>().unwrap_err().to_string();
        assert!(err.contains("measurement, category"), "{err}");
        for bad in ["id", "=ignore", "a=nothing"] {
            assert!(parse_field_roles(bad).is_err(), "{bad}");
        }
        assert!(parse_field_roles("").unwrap().is_empty());
    }

    #[test]
    fn identifiers_are_recognised() {
        let seq = numbers((1..=600).map(f64::from));
        assert_eq!(
            infer("row", FieldKind::Number, &seq).0,
            FieldRole::Identifier
        );
        // Distinct but spread out and in no order, not named: a measurement (amounts in cents).
        let spread = numbers((0..200).map(|i| f64::from(2_000 + (i * 7_919) % 200 * 97)));
        assert_eq!(
            infer("cents", FieldKind::Number, &spread).0,
            FieldRole::Measurement
        );
        // Whole amounts, distinct in a small sample and filling half their range: still a measurement.
        let amounts = numbers((0..100).map(|k| f64::from(20 + (k * 37) % 180)));
        assert_eq!(
            infer("amount", FieldKind::Number, &amounts).0,
            FieldRole::Measurement
        );
        // An auto-increment key sampled with gaps: rising from record to record.
        let sampled = numbers((0..300).map(|k| f64::from(1_000 + k * 13 + k % 7)));
        let (role, rule) = infer("row", FieldKind::Number, &sampled);
        assert_eq!(role, FieldRole::Identifier);
        assert!(rule.contains("rising"), "{rule}");
        assert_eq!(
            infer("order_id", FieldKind::Number, &spread).0,
            FieldRole::Identifier
        );
        assert_eq!(
            infer("orderId", FieldKind::Number, &spread).0,
            FieldRole::Identifier
        );
        // Few distinct values: a measurement even when named like an identifier.
        let few = numbers((0..200).map(|i| f64::from(i % 5)));
        assert_eq!(
            infer("status_id", FieldKind::Number, &few).0,
            FieldRole::Measurement
        );
        let uuids: Vec<String> = (0..50)
            .map(|i| format!("{i:08x}-1234-4abc-8def-0123456789ab"))
            .collect();
        let e = strings(uuids.iter().map(String::as_str));
        let (role, rule) = infer("ref", FieldKind::Category, &e);
        assert_eq!(role, FieldRole::Identifier);
        assert!(rule.contains("UUID"), "{rule}");
        let emails: Vec<String> = (0..50).map(|i| format!("u{i}@example.com")).collect();
        assert_eq!(
            infer(
                "email",
                FieldKind::Category,
                &strings(emails.iter().map(String::as_str))
            )
            .0,
            FieldRole::Identifier
        );
        let notes: Vec<String> = (0..50)
            .map(|i| format!("customer {i} asked for a refund"))
            .collect();
        assert_eq!(
            infer(
                "note",
                FieldKind::Category,
                &strings(notes.iter().map(String::as_str))
            )
            .0,
            FieldRole::Text
        );
        let countries = strings((0..60).map(|i| ["US", "FR", "DE"][i % 3]));
        assert_eq!(
            infer("country", FieldKind::Category, &countries).0,
            FieldRole::Category
        );
    }

    #[test]
    fn epoch_numbers_named_like_a_time_are_timestamps() {
        let secs = numbers((0..50).map(|i| 1.7e9 + f64::from(i) * 60.0));
        assert_eq!(
            infer("created_at", FieldKind::Number, &secs).0,
            FieldRole::Timestamp
        );
        let millis = numbers((0..50).map(|i| 1.7e12 + f64::from(i) * 60_000.0));
        assert_eq!(
            infer("eventTime", FieldKind::Number, &millis).0,
            FieldRole::Timestamp
        );
        let shuffled = numbers((0..50).map(|i| 1.7e9 + f64::from((i * 31) % 50) * 60.5));
        assert_eq!(
            infer("amount", FieldKind::Number, &shuffled).0,
            FieldRole::Measurement
        );
    }

    #[test]
    fn too_little_evidence_keeps_the_kind() {
        let e = numbers((1..=10).map(f64::from));
        let (role, rule) = infer("id", FieldKind::Number, &e);
        assert_eq!(role, FieldRole::Measurement);
        assert!(rule.contains("too few"), "{rule}");
    }

    #[test]
    fn names() {
        for yes in ["id", "user_id", "userId", "orderID", "a.b.uuid", "pk"] {
            assert!(named_like_identifier(yes), "{yes}");
        }
        for no in ["paid", "valid", "width", "ID_CARD"] {
            assert!(!named_like_identifier(no), "{no}");
        }
    }
}
