//! Flattening a JSON record into `(path, leaf)` pairs.
//!
//! Rules:
//! - nested objects flatten to dotted paths (`{"a": {"b": 1}}` → `a.b`); a key containing a dot is kept as is;
//! - an array contributes its length as `path.len`, and when every element is a number, `path.min`, `path.max` and
//!   `path.mean`; elements are not descended into (an array of objects is summarised by its length);
//! - `null` is a leaf of its own (treated as missing downstream);
//! - records nested deeper than [`Limits::max_depth`] or with more than [`Limits::max_fields`] leaves are refused
//!   with [`Error::InvalidRecord`], so a hostile record cannot exhaust the stack or memory; whatever `max_depth`
//!   says, nesting beyond [`MAX_DEPTH`] is refused too (a limit restored from a snapshot cannot lift it).
//!
//! `serde_json::Value` cannot hold NaN or infinity, so every number here is finite.

use std::borrow::Cow;

use serde_json::Value;

use crate::error::{Error, Result};

/// The deepest nesting any [`Limits`] allows (serde_json's own recursion limit when it parses text): a larger
/// `max_depth` acts as this one.
pub const MAX_DEPTH: usize = 128;

/// Bounds on what one record may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Deepest nesting of objects (default 32; values above [`MAX_DEPTH`] act as [`MAX_DEPTH`]).
    pub max_depth: usize,
    /// Most leaves one record may produce (default 10,000).
    pub max_fields: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 32,
            max_fields: 10_000,
        }
    }
}

/// One flattened value.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf<'a> {
    /// JSON `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A (finite) number, or a numeric summary of an array.
    Number(f64),
    /// A string.
    String(&'a str),
}

/// Flattens `record` (which must be a JSON object) into `(path, leaf)` pairs, keys in sorted order at each level.
///
/// # Errors
/// [`Error::InvalidRecord`] if the record is not an object or exceeds `limits`.
pub fn flatten<'a>(record: &'a Value, limits: &Limits) -> Result<Vec<(Cow<'a, str>, Leaf<'a>)>> {
    let mut out = Vec::new();
    flatten_into(record, limits, &mut out)?;
    Ok(out)
}

/// As [`flatten`], appending to `out` (cleared first) so a caller can reuse the allocation.
///
/// # Errors
/// As [`flatten`].
pub fn flatten_into<'a>(
    record: &'a Value,
    limits: &Limits,
    out: &mut Vec<(Cow<'a, str>, Leaf<'a>)>,
) -> Result<()> {
    out.clear();
    for_each_leaf(record, limits, |path, top_key, leaf| {
        // A top-level key is its own path and is borrowed; nested paths are copied.
        let path = match top_key {
            Some(key) => Cow::Borrowed(key),
            None => Cow::Owned(path.to_string()),
        };
        out.push((path, leaf));
    })
}

/// Calls `visit(path, top_key, leaf)` for every leaf of `record` (which must be a JSON object), in the order
/// [`flatten`] lists them, without building a path per leaf: `path` is one buffer reused across leaves, and
/// `top_key` is the record's own key when the leaf is at the top level (the path borrowed from the record).
///
/// # Errors
/// As [`flatten`]; the leaves before the one past the limits have been visited.
pub(crate) fn for_each_leaf<'a>(
    record: &'a Value,
    limits: &Limits,
    mut visit: impl FnMut(&str, Option<&'a str>, Leaf<'a>),
) -> Result<()> {
    let Value::Object(map) = record else {
        return Err(Error::InvalidRecord {
            reason: format!("expected a JSON object, got {}", type_name(record)),
        });
    };
    let mut walk = Walk {
        path: String::new(),
        leaves: 0,
        limits,
        visit: &mut visit,
    };
    walk.object(map, 1)
}

/// The leaves an array of numbers adds after its `.len`, as [`flatten`] lists them: `.min`, `.max` and `.mean`;
/// `None` for no numbers, or for any that is not finite (JSON holds none).
pub fn number_summaries(numbers: &[f64]) -> Option<[(&'static str, f64); 3]> {
    if numbers.is_empty() || !numbers.iter().all(|v| v.is_finite()) {
        return None;
    }
    let min = numbers.iter().copied().fold(f64::INFINITY, f64::min);
    let max = numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Summing finite values can overflow; the mean of finite values cannot exceed their range.
    let mean = numbers
        .iter()
        .map(|v| v / numbers.len() as f64)
        .sum::<f64>();
    Some([
        (".min", min),
        (".max", max),
        (".mean", mean.clamp(min, max)),
    ])
}

/// How a JSON value's type reads in an error message ("a number", "an array", …).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One flattening: the path of the current leaf, the leaves visited so far (bounded by the limits) and the
/// visitor.
struct Walk<'l, 'v, F> {
    path: String,
    leaves: usize,
    limits: &'l Limits,
    visit: &'v mut F,
}

impl<'a, F: FnMut(&str, Option<&'a str>, Leaf<'a>)> Walk<'_, '_, F> {
    fn object(&mut self, map: &'a serde_json::Map<String, Value>, depth: usize) -> Result<()> {
        let max_depth = self.limits.max_depth.min(MAX_DEPTH);
        if depth > max_depth {
            return Err(Error::InvalidRecord {
                reason: format!("nested deeper than {max_depth} levels"),
            });
        }
        for (key, value) in map {
            let scalar = match value {
                Value::Null => Some(Leaf::Null),
                Value::Bool(b) => Some(Leaf::Bool(*b)),
                Value::Number(n) => Some(Leaf::Number(n.as_f64().unwrap_or(0.0))),
                Value::String(s) => Some(Leaf::String(s)),
                Value::Array(_) | Value::Object(_) => None,
            };
            // A top-level scalar's path is its key: no copy into the path buffer.
            if depth == 1
                && let Some(leaf) = scalar
            {
                self.count()?;
                (self.visit)(key, Some(key), leaf);
                continue;
            }
            let len = self.path.len();
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(key);
            match (scalar, value) {
                (Some(leaf), _) => self.leaf(leaf)?,
                (None, Value::Object(inner)) => self.object(inner, depth + 1)?,
                (None, Value::Array(items)) => self.array(items)?,
                (None, _) => {}
            }
            self.path.truncate(len);
        }
        Ok(())
    }

    /// An array at the current path: its length, and when every element is a number their minimum, maximum and
    /// mean.
    fn array(&mut self, items: &'a [Value]) -> Result<()> {
        self.suffixed(".len", Leaf::Number(items.len() as f64))?;
        let numbers: Option<Vec<f64>> = items.iter().map(Value::as_f64).collect();
        for (suffix, v) in numbers
            .as_deref()
            .and_then(number_summaries)
            .into_iter()
            .flatten()
        {
            self.suffixed(suffix, Leaf::Number(v))?;
        }
        Ok(())
    }

    /// A leaf at the current path with `suffix` added (an array's summaries).
    fn suffixed(&mut self, suffix: &str, leaf: Leaf<'a>) -> Result<()> {
        let len = self.path.len();
        self.path.push_str(suffix);
        let visited = self.leaf(leaf);
        self.path.truncate(len);
        visited
    }

    /// A nested leaf (or an array's summary) at the current path.
    fn leaf(&mut self, leaf: Leaf<'a>) -> Result<()> {
        self.count()?;
        (self.visit)(&self.path, None, leaf);
        Ok(())
    }

    /// Counts a leaf against [`Limits::max_fields`].
    fn count(&mut self) -> Result<()> {
        if self.leaves >= self.limits.max_fields {
            return Err(Error::InvalidRecord {
                reason: format!("more than {} fields", self.limits.max_fields),
            });
        }
        self.leaves += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_objects_and_arrays() {
        let r = json!({"a": {"b": 1, "c": {"d": "x"}}, "tags": ["p", "q"], "v": [1, 2, 6], "n": null, "ok": true});
        let f = flatten(&r, &Limits::default()).unwrap();
        let paths: Vec<&str> = f.iter().map(|(p, _)| p.as_ref()).collect();
        assert_eq!(
            paths,
            [
                "a.b", "a.c.d", "n", "ok", "tags.len", "v.len", "v.min", "v.max", "v.mean"
            ]
        );
        assert_eq!(f[1].1, Leaf::String("x"));
        assert_eq!(f[8].1, Leaf::Number(3.0));
        assert_eq!(f[2].1, Leaf::Null);
    }

    #[test]
    fn refuses_non_objects_and_hostile_shapes() {
        assert!(matches!(
            flatten(&json!([1, 2]), &Limits::default()),
            Err(Error::InvalidRecord { .. })
        ));
        assert!(matches!(
            flatten(&json!("x"), &Limits::default()),
            Err(Error::InvalidRecord { .. })
        ));
        let mut deep = json!({"leaf": 1});
        for _ in 0..40 {
            deep = json!({ "n": deep });
        }
        assert!(matches!(
            flatten(&deep, &Limits::default()),
            Err(Error::InvalidRecord { .. })
        ));
        let wide: serde_json::Map<String, Value> =
            (0..20).map(|i| (format!("f{i}"), json!(i))).collect();
        let limits = Limits {
            max_depth: 4,
            max_fields: 10,
        };
        assert!(matches!(
            flatten(&Value::Object(wide), &limits),
            Err(Error::InvalidRecord { .. })
        ));
    }

    #[test]
    fn huge_numbers_stay_finite() {
        let r: Value =
            serde_json::from_str(r#"{"v": [1e308, 1e308], "u": 18446744073709551615}"#).unwrap();
        let f = flatten(&r, &Limits::default()).unwrap();
        assert!(
            f.iter()
                .all(|(_, l)| !matches!(l, Leaf::Number(v) if !v.is_finite()))
        );
    }
}
