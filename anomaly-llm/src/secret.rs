//! [`Secret`]: an API key that never shows in `Debug`, logs or errors.

use std::fmt;

/// An API key. `Debug` prints `Secret("***")`; there is no `Display`, no `Serialize`, and the only way to read
/// the value is [`expose`](Secret::expose), which the providers call when they set the request header.
///
/// ```
/// use anomaly_llm::Secret;
///
/// let key = Secret::new("sk-ant-very-secret");
/// assert_eq!(format!("{key:?}"), r#"Secret("***")"#);
/// assert_eq!(key.expose(), "sk-ant-very-secret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The key itself; for the request header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the key in `text` by `[redacted]`, for provider error messages that echo
    /// what they were sent. Keys shorter than 8 characters are not searched for (they would match ordinary text).
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.len() < 8 {
            return text.to_string();
        }
        text.replace(&self.0, "[redacted]")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"***\")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_even_nested() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            key: Secret,
        }
        let h = Holder {
            key: Secret::new("sk-live-0123456789"),
        };
        let shown = format!("{h:?} {h:#?}");
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn scrub_removes_the_key_only_when_long_enough() {
        let k = Secret::new("sk-live-0123456789");
        assert_eq!(
            k.scrub("bad key sk-live-0123456789 given"),
            "bad key [redacted] given"
        );
        assert_eq!(Secret::new("abc").scrub("abc def"), "abc def");
    }
}
