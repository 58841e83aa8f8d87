//! The observed type of a field's value, with numeric and date/time strings recognised.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};

use super::flatten::Leaf;

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Numbers, and strings that parse as finite numbers.
    Number,
    /// `true` / `false`.
    Bool,
    /// Date/time strings (RFC 3339, RFC 2822 and common layouts).
    DateTime,
    /// Any other string.
    Category,
    /// Only `null` seen.
    Null,
}

/// A leaf interpreted by its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed<'a> {
    /// Missing value.
    Null,
    /// A number (from a number, or a numeric string).
    Number(f64),
    /// A boolean as 0 or 1.
    Bool(bool),
    /// A date/time.
    DateTime(Moment),
    /// A category.
    Category(&'a str),
}

impl Typed<'_> {
    /// The kind of this value.
    pub fn kind(&self) -> FieldKind {
        match self {
            Typed::Null => FieldKind::Null,
            Typed::Number(_) => FieldKind::Number,
            Typed::Bool(_) => FieldKind::Bool,
            Typed::DateTime(_) => FieldKind::DateTime,
            Typed::Category(_) => FieldKind::Category,
        }
    }
}

/// A point in time, with the calendar features the vectoriser uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Moment {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub epoch_seconds: f64,
    /// Hour of the day with its fraction, in `[0, 24)`, in the timestamp's own offset.
    pub hour: f64,
    /// Day of the week, Monday = 0.
    pub weekday: u32,
}

impl Moment {
    /// `(sin, cos)` of the hour of day on the unit circle.
    pub fn hour_cycle(&self) -> (f64, f64) {
        let a = self.hour / 24.0 * std::f64::consts::TAU;
        (a.sin(), a.cos())
    }

    /// `(sin, cos)` of the day of week on the unit circle.
    pub fn weekday_cycle(&self) -> (f64, f64) {
        // Seven days, computed once by the same expression (the same bits): the vectoriser calls this per record.
        static DAYS: std::sync::LazyLock<[(f64, f64); 7]> =
            std::sync::LazyLock::new(|| std::array::from_fn(|d| weekday_angle(d as u32)));
        match DAYS.get(self.weekday as usize) {
            Some(&cycle) => cycle,
            None => weekday_angle(self.weekday),
        }
    }
}

/// `(sin, cos)` of day `weekday` of seven on the unit circle.
fn weekday_angle(weekday: u32) -> (f64, f64) {
    let a = weekday as f64 / 7.0 * std::f64::consts::TAU;
    (a.sin(), a.cos())
}

/// Interprets a flattened leaf.
pub fn interpret<'a>(leaf: &Leaf<'a>) -> Typed<'a> {
    match *leaf {
        Leaf::Null => Typed::Null,
        Leaf::Bool(b) => Typed::Bool(b),
        Leaf::Number(v) => Typed::Number(v),
        Leaf::String(s) => interpret_str(s),
    }
}

/// Interprets a string: a finite number, a date/time, or a category. `"NaN"` and `"inf"` stay categories.
pub fn interpret_str(s: &str) -> Typed<'_> {
    let t = s.trim();
    if let Some(first) = t.as_bytes().first() {
        if (first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.'))
            && let Ok(v) = t.parse::<f64>()
            && v.is_finite()
        {
            return Typed::Number(v);
        }
        if (8..=40).contains(&t.len())
            && let Some(m) = parse_moment(t)
        {
            return Typed::DateTime(m);
        }
    }
    Typed::Category(s)
}

/// Parses RFC 3339, RFC 2822 and common date/time layouts; times without an offset are taken as UTC.
pub fn parse_moment(s: &str) -> Option<Moment> {
    match parse_iso_fast(s.as_bytes()) {
        Some(m) => Some(m),
        None => parse_moment_layouts(s),
    }
}

/// Reads `n` ASCII digits at `at`.
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let d = b.get(at..at + n)?;
    d.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// The layouts databases and logs write most, read without a format string: `YYYY-MM-DD`, then `T` or a space
/// and `HH:MM`, `:SS`, a fraction of up to 9 digits; with `T` and seconds, `Z` or `±HH:MM` too. Whatever it
/// reads, the format layouts of [`parse_moment_layouts`] read the same (the test holds them to it); anything
/// else is left to them (`None`).
fn parse_iso_fast(b: &[u8]) -> Option<Moment> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date =
        NaiveDate::from_ymd_opt(digits(b, 0, 4)? as i32, digits(b, 5, 2)?, digits(b, 8, 2)?)?;
    if b.len() == 10 {
        let n = date.and_hms_opt(0, 0, 0)?;
        return Some(moment(n.and_utc().timestamp_micros(), n));
    }
    let sep = b[10];
    if (sep != b'T' && sep != b' ') || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let (hour, minute) = (digits(b, 11, 2)?, digits(b, 14, 2)?);
    let mut at = 16;
    let mut second = 0;
    let mut nanos = 0;
    let with_seconds = b.get(at) == Some(&b':');
    if with_seconds {
        second = digits(b, at + 1, 2)?;
        at += 3;
        if b.get(at) == Some(&b'.') {
            let start = at + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            let n = end - start;
            if n == 0 || n > 9 {
                return None;
            }
            nanos = digits(b, start, n)? * 10u32.pow(9 - n as u32);
            at = end;
        }
    }
    // Leap seconds and out-of-range fields are the layouts' business.
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let local = date.and_hms_nano_opt(hour, minute, second, nanos)?;
    let offset_seconds = match &b[at..] {
        [] => 0,
        [b'Z'] if with_seconds && sep == b'T' => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] if with_seconds && sep == b'T' => {
            let (h, m) = (digits(b, at + 1, 2)?, digits(b, at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i64::from(h * 3600 + m * 60);
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let micros = local.and_utc().timestamp_micros() - offset_seconds * 1_000_000;
    Some(moment(micros, local))
}

/// [`parse_moment`] through chrono's format layouts.
fn parse_moment_layouts(s: &str) -> Option<Moment> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(moment(dt.timestamp_micros(), dt.naive_local()));
    }
    if s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
        if let Ok(dt) = DateTime::parse_from_rfc2822(s) {
            return Some(moment(dt.timestamp_micros(), dt.naive_local()));
        }
        return None;
    }
    const WITH_OFFSET: &[&str] = &[
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ];
    for f in WITH_OFFSET {
        if let Ok(dt) = DateTime::parse_from_str(s, f) {
            return Some(moment(dt.timestamp_micros(), dt.naive_local()));
        }
    }
    const NAIVE: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y/%m/%d %H:%M",
    ];
    for f in NAIVE {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            return Some(moment(n.and_utc().timestamp_micros(), n));
        }
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            let n = d.and_hms_opt(0, 0, 0)?;
            return Some(moment(n.and_utc().timestamp_micros(), n));
        }
    }
    None
}

fn moment(micros: i64, local: NaiveDateTime) -> Moment {
    Moment {
        epoch_seconds: micros as f64 / 1e6,
        hour: local.hour() as f64 + local.minute() as f64 / 60.0 + local.second() as f64 / 3600.0,
        weekday: local.weekday().num_days_from_monday(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_reader_agrees_with_the_layouts() {
        let mut cases = vec![
            "2026-11-01".to_string(),
            "2026-02-30".into(),
            "2026-11-01T13:53".into(),
            "2026-11-01 13:53".into(),
            "2026-11-01 13:53:07".into(),
            "2026-11-01T13:53:07.5".into(),
            "2026-11-01T13:53:07.123456789".into(),
            "2026-11-01T13:53:07.1234567891".into(),
            "2026-11-01T13:53:07Z".into(),
            "2026-11-01T13:53:07.25+05:30".into(),
            "2026-11-01T13:53:07-08:00".into(),
            "2026-11-01 13:53:07Z".into(),
            "2026-11-01T13:53Z".into(),
            "2026-11-01T24:00:00".into(),
            "2026-11-01T23:59:60".into(),
            "2026-11-01T13:53:07.".into(),
            "2026-11-01T13:53:07+0530".into(),
            "2026-1-01 13:53".into(),
            "2026-11-01T13:53:07 ".into(),
            "2026-11-01x13:53".into(),
        ];
        // Every field at and around its limits.
        for (y, mo, d, h, mi, se) in [
            (1999, 1, 1, 0, 0, 0),
            (2024, 2, 29, 23, 59, 59),
            (2100, 12, 31, 12, 30, 30),
        ] {
            for sep in ['T', ' '] {
                cases.push(format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{se:02}"));
                cases.push(format!(
                    "{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{se:02}.000001"
                ));
                cases.push(format!(
                    "{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{se:02}+14:00"
                ));
            }
        }
        for c in &cases {
            assert_eq!(parse_moment(c), parse_moment_layouts(c), "{c:?}");
            if let Some(fast) = parse_iso_fast(c.as_bytes()) {
                assert_eq!(Some(fast), parse_moment_layouts(c), "{c:?}");
            }
        }
        assert!(parse_iso_fast(b"2026-11-01 13:53:07").is_some());
        assert!(parse_iso_fast(b"2026-11-01T13:53:07.25+05:30").is_some());
    }

    #[test]
    fn strings_are_recognised() {
        assert_eq!(interpret_str("42.5"), Typed::Number(42.5));
        assert_eq!(interpret_str(" -3 "), Typed::Number(-3.0));
        assert_eq!(interpret_str("NaN"), Typed::Category("NaN"));
        assert_eq!(interpret_str("inf"), Typed::Category("inf"));
        assert_eq!(interpret_str("1e999"), Typed::Category("1e999"));
        assert_eq!(interpret_str("KP"), Typed::Category("KP"));
        assert_eq!(interpret_str(""), Typed::Category(""));
    }

    #[test]
    fn date_times_in_common_layouts() {
        // 2024-03-05 is a Tuesday; 1709647200 is 2024-03-05T14:00:00Z.
        for s in [
            "2024-03-05T14:00:00Z",
            "2024-03-05T15:00:00+01:00",
            "2024-03-05 14:00:00",
            "2024-03-05T14:00:00.000",
            "2024/03/05 14:00",
            "Tue, 05 Mar 2024 14:00:00 +0000",
        ] {
            let Typed::DateTime(m) = interpret_str(s) else {
                panic!("{s}")
            };
            assert_eq!(m.epoch_seconds, 1_709_647_200.0, "{s}");
            assert_eq!(m.weekday, 1, "{s}");
        }
        let Typed::DateTime(m) = interpret_str("2024-03-05") else {
            panic!()
        };
        assert_eq!(m.hour, 0.0);
        let Typed::DateTime(m) = interpret_str("2024-03-05T15:30:00+01:00") else {
            panic!()
        };
        assert_eq!(m.hour, 15.5, "hour of day in the timestamp's own offset");
        assert!(matches!(interpret_str("2024-13-45"), Typed::Category(_)));
        for s in ["", " ", "T", "2024", "--", "\u{0}"] {
            assert!(parse_moment(s).is_none(), "{s:?}");
        }
    }
}
