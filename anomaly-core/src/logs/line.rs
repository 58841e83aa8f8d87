//! What a log line's header says: its severity level and its time, found among its first tokens.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};

/// Tokens at the start of a line searched for a level or a time.
const HEADER_TOKENS: usize = 12;
/// 2000-01-01 and 2100-01-01 in Unix seconds: a header time outside is not taken for one.
const YEAR_2000: f64 = 946_684_800.0;
const YEAR_2100: f64 = 4_102_444_800.0;

/// A line's severity level, from the least to the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// `TRACE`, `FINER`, `FINEST`, `VERBOSE`.
    Trace,
    /// `DEBUG`.
    Debug,
    /// `INFO`, `INFORMATION`.
    Info,
    /// `NOTICE`.
    Notice,
    /// `WARN`, `WARNING`.
    Warning,
    /// `ERROR`, `ERR`.
    Error,
    /// `SEVERE`, `CRITICAL`, `CRIT`.
    Critical,
    /// `FATAL`, `PANIC`, `EMERG`, `EMERGENCY`, `ALERT`, `FAILURE`.
    Fatal,
}

impl Severity {
    /// Every level, least severe first.
    pub const ALL: [Severity; 8] = [
        Severity::Trace,
        Severity::Debug,
        Severity::Info,
        Severity::Notice,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
        Severity::Fatal,
    ];

    /// Its name, upper case (`"WARNING"`).
    pub fn name(self) -> &'static str {
        match self {
            Severity::Trace => "TRACE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
            Severity::Fatal => "FATAL",
        }
    }

    /// The level a header token names: upper case (`ERROR`, `ERROR:`), or any case between brackets (`[Error]`,
    /// `<warn>`, `(info)`); a lower-case word of the message (`failure;`) is not a level.
    pub fn parse(token: &str) -> Option<Severity> {
        let t = token.trim_matches(|c: char| !c.is_ascii_alphabetic());
        if t.len() < 3 || t.len() > 11 {
            return None;
        }
        let bracketed = matches!(token.as_bytes().first(), Some(b'[' | b'<' | b'('))
            && matches!(token.as_bytes().last(), Some(b']' | b'>' | b')' | b':'));
        if !bracketed && t.bytes().any(|c| c.is_ascii_lowercase()) {
            return None;
        }
        let mut buf = [0u8; 11];
        for (b, c) in buf.iter_mut().zip(t.bytes()) {
            *b = c.to_ascii_uppercase();
        }
        Some(match &buf[..t.len()] {
            b"TRACE" | b"FINER" | b"FINEST" | b"VERBOSE" => Severity::Trace,
            b"DEBUG" => Severity::Debug,
            b"INFO" | b"INFORMATION" => Severity::Info,
            b"NOTICE" => Severity::Notice,
            b"WARN" | b"WARNING" => Severity::Warning,
            b"ERROR" | b"ERR" => Severity::Error,
            b"SEVERE" | b"CRITICAL" | b"CRIT" => Severity::Critical,
            b"FATAL" | b"PANIC" | b"EMERG" | b"EMERGENCY" | b"ALERT" | b"FAILURE" => {
                Severity::Fatal
            }
            _ => return None,
        })
    }

    /// The first level named among the line's first twelve tokens.
    pub fn in_line(line: &str) -> Option<Severity> {
        Severity::split(line).0
    }

    /// The first level named among the line's first twelve tokens, and the message after it (the whole line when
    /// none is named): `"2024-01-01 12:00:00 ERROR db: timeout"` → `(Some(Error), "db: timeout")`.
    pub fn split(line: &str) -> (Option<Severity>, &str) {
        let mut rest = line.trim_start();
        for _ in 0..HEADER_TOKENS {
            if rest.is_empty() {
                break;
            }
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if let Some(s) = Severity::parse(&rest[..end]) {
                return (Some(s), rest[end..].trim_start());
            }
            rest = rest[end..].trim_start();
        }
        (None, line)
    }
}

/// The time a line's header gives, in seconds since the Unix epoch (UTC): an epoch in seconds (10 digits) or
/// milliseconds (13 digits), or a date `YYYY-MM-DD` (also with `/` or `.`) followed by a
/// time `HH:MM:SS` (or `HH.MM.SS`, with a fraction) in the same token (after `T`, `-` or `_`) or the next one.
/// Dates without a zone are read as UTC; only times from 2000 to 2100 count.
pub fn time_in_line(line: &str) -> Option<f64> {
    let mut tokens = line.split_whitespace().take(HEADER_TOKENS).peekable();
    while let Some(raw) = tokens.next() {
        let t = raw.trim_matches(|c: char| matches!(c, '[' | ']' | '(' | ')' | ',' | '"'));
        if let Some(s) = epoch(t) {
            return Some(s);
        }
        let Some(date) = t.get(..10).and_then(date) else {
            continue;
        };
        let rest = t[10..].trim_start_matches(['T', '-', '_', ' ']);
        let rest = if rest.is_empty() {
            tokens.peek().copied().unwrap_or("")
        } else {
            rest
        };
        let time = time(rest).unwrap_or(NaiveTime::MIN);
        let at = NaiveDateTime::new(date, time).and_utc();
        let seconds = at.timestamp() as f64 + f64::from(at.timestamp_subsec_micros()) / 1e6;
        if (YEAR_2000..YEAR_2100).contains(&seconds) {
            return Some(seconds);
        }
    }
    None
}

fn epoch(t: &str) -> Option<f64> {
    if !t.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: u64 = t.parse().ok()?;
    let seconds = match t.len() {
        10 => v as f64,
        13 => v as f64 / 1e3,
        _ => return None,
    };
    (YEAR_2000..YEAR_2100).contains(&seconds).then_some(seconds)
}

fn date(t: &str) -> Option<NaiveDate> {
    if !t.is_ascii() {
        return None;
    }
    let b = t.as_bytes();
    let sep = b[4];
    if !matches!(sep, b'-' | b'/' | b'.') || b[7] != sep {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = &t[r];
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

fn time(t: &str) -> Option<NaiveTime> {
    if t.len() < 8 {
        return None;
    }
    let b = t.as_bytes();
    if !matches!(b[2], b':' | b'.') || b[5] != b[2] {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (h, m, s) = (num(0..2)?, num(3..5)?, num(6..8)?);
    let micros = if matches!(b.get(8), Some(b'.' | b',')) {
        let digits: String = t[9..]
            .chars()
            .take_while(char::is_ascii_digit)
            .take(6)
            .collect();
        if digits.is_empty() {
            0
        } else {
            digits.parse::<u32>().ok()? * 10u32.pow(6 - digits.len() as u32)
        }
    } else {
        0
    };
    NaiveTime::from_hms_micro_opt(h, m, s, micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_found_in_the_header() {
        assert_eq!(
            Severity::in_line("2024-01-01 12:00:00 [ERROR] disk full"),
            Some(Severity::Error)
        );
        assert_eq!(
            Severity::in_line("- 1117838570 2005.06.03 R02 RAS KERNEL FATAL data TLB error"),
            Some(Severity::Fatal)
        );
        assert_eq!(Severity::in_line("WARN: slow"), Some(Severity::Warning));
        assert_eq!(Severity::in_line("[warn] slow"), Some(Severity::Warning));
        assert_eq!(
            Severity::in_line("sshd: authentication failure; logname= uid=0"),
            None
        );
        assert_eq!(Severity::in_line("all fine here, no error"), None);
        assert_eq!(Severity::in_line("<Error> x"), Some(Severity::Error));
        assert_eq!(
            Severity::split("2024-01-01 12:00:00 ERROR db: timeout"),
            (Some(Severity::Error), "db: timeout")
        );
        assert_eq!(Severity::split("plain message"), (None, "plain message"));
        assert!(Severity::Fatal > Severity::Error && Severity::Error > Severity::Info);
    }

    #[test]
    fn times_are_found_in_the_header() {
        assert_eq!(
            time_in_line("- 1117838570 2005.06.03 R02 RAS"),
            Some(1_117_838_570.0)
        );
        assert_eq!(
            time_in_line("2005-06-03-15.42.50.675872 R02 RAS"),
            Some(1_117_813_370.675872)
        );
        assert_eq!(
            time_in_line("2024-01-02T03:04:05Z GET /"),
            Some(1_704_164_645.0)
        );
        assert_eq!(
            time_in_line("[2024-01-02 03:04:05,120] INFO"),
            Some(1_704_164_645.12)
        );
        assert_eq!(time_in_line("1704164645123 x"), Some(1_704_164_645.123));
        assert_eq!(time_in_line("value 42 and 1234567890123456"), None);
        assert_eq!(time_in_line("2024-13-45 bad date"), None);
        assert_eq!(time_in_line("1970-01-01 00:00:00 too old"), None);
        assert_eq!(time_in_line(""), None);
        assert_eq!(time_in_line("2024-01-0é 12:00:00"), None);
    }
}
