//! A text cell's value: missing, a number, a boolean, or a string (which the vectorizer may read as a date/time).

use serde_json::{Number, Value};

/// Cells read as missing values: the empty cell and pandas' default `na_values`, compared after trimming spaces.
/// (Each starts with `#`, `-`, `1`, `<`, `N` or `n` and has at most 8 bytes, which the check relies on.)
pub const MISSING_TOKENS: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// The value of a text cell, surrounding spaces ignored:
///
/// - one of [`MISSING_TOKENS`]: `null`;
/// - a whole number that fits 64 bits: that integer, exactly (so long identifiers keep every digit);
/// - another finite number (`3.5`, `-1e-3`): that number;
/// - `true` or `false`, in any case: a boolean;
/// - anything else, including `inf`: the trimmed text, as a string. A date or time stays a string, which the
///   vectorizer recognises; in a column of numbers, text such as `inf` or `12 kg` is a value of another type,
///   which the vectorizer counts as missing and reports.
///
/// ```
/// use anomaly_core::table::cell_value;
/// use serde_json::json;
/// assert_eq!(cell_value(" 42 "), json!(42));
/// assert_eq!(cell_value("2.5e3"), json!(2500.0));
/// assert_eq!(cell_value("NA"), json!(null));
/// assert_eq!(cell_value("TRUE"), json!(true));
/// assert_eq!(cell_value("2014-07-01 00:00:00"), json!("2014-07-01 00:00:00"));
/// ```
pub fn cell_value(cell: &str) -> Value {
    let mut v = Value::Null;
    cell_value_into(cell, &mut v);
    v
}

/// [`cell_value`] written into `out`, reusing its string's buffer when it holds one.
pub(super) fn cell_value_into(cell: &str, out: &mut Value) {
    match typed(cell) {
        Typed::Text(t) => match out {
            Value::String(s) => {
                s.clear();
                s.push_str(t);
            }
            other => *other = Value::String(t.to_string()),
        },
        Typed::Value(v) => *out = v,
    }
}

enum Typed<'a> {
    Value(Value),
    Text(&'a str),
}

fn typed(cell: &str) -> Typed<'_> {
    let t = cell.trim();
    if is_missing(t) {
        return Typed::Value(Value::Null);
    }
    let first = t.as_bytes()[0];
    if first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.') {
        // `-0` is the float -0.0, as a float parser reads it.
        if let Ok(i) = t.parse::<i64>()
            && !(i == 0 && first == b'-')
        {
            return Typed::Value(Value::from(i));
        }
        if let Ok(u) = t.parse::<u64>() {
            return Typed::Value(Value::from(u));
        }
        if let Ok(v) = t.parse::<f64>()
            && let Some(n) = Number::from_f64(v)
        {
            return Typed::Value(Value::Number(n));
        }
    }
    if t.eq_ignore_ascii_case("true") {
        return Typed::Value(Value::Bool(true));
    }
    if t.eq_ignore_ascii_case("false") {
        return Typed::Value(Value::Bool(false));
    }
    Typed::Text(t)
}

/// Whether `t` is one of [`MISSING_TOKENS`], looking at its length and first byte before comparing.
fn is_missing(t: &str) -> bool {
    match t.as_bytes().first() {
        None => true,
        Some(b'#' | b'-' | b'1' | b'<' | b'N' | b'n') if t.len() <= 8 => {
            MISSING_TOKENS.contains(&t)
        }
        Some(_) => false,
    }
}
