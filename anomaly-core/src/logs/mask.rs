//! Splitting a log line into tokens, and masking the variable parts of each token (numbers, IP addresses, hex,
//! paths, UUIDs) before template mining.
//!
//! Masks work token by token, so a masked value keeps its position and becomes one of the template's
//! parameters. A whole token that is an IP address, a UUID, a path, a hex word or a number is replaced by
//! `<IP>`, `<UUID>`, `<PATH>`, `<HEX>` or `<NUM>`; otherwise every number inside a token that stands alone
//! (not glued to letters: `size=42,` but not `R02`) becomes `<NUM>`, as Drain3's usual number mask does.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Which built-in masks run before template mining. All on by default; [`Masks::none`] gives Drain3's
/// defaults (no masking), which the grouping-accuracy references use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Masks {
    /// IPv4 addresses, with an optional `:port` (`<IP>`).
    pub ip: bool,
    /// UUIDs in their 8-4-4-4-12 form (`<UUID>`).
    pub uuid: bool,
    /// `0x…` words and hex words of 16 characters or more with at least one digit (`<HEX>`).
    pub hex: bool,
    /// Absolute paths: `/a/b`, `~/a`, `C:\a` (`<PATH>`).
    pub path: bool,
    /// Numbers: a whole token, or a number inside a token not glued to letters (`<NUM>`).
    pub number: bool,
}

impl Default for Masks {
    /// Every mask on.
    fn default() -> Self {
        Masks {
            ip: true,
            uuid: true,
            hex: true,
            path: true,
            number: true,
        }
    }
}

impl Masks {
    /// No masking at all (Drain3's default configuration).
    pub fn none() -> Self {
        Masks {
            ip: false,
            uuid: false,
            hex: false,
            path: false,
            number: false,
        }
    }

    fn any(&self) -> bool {
        self.ip || self.uuid || self.hex || self.path || self.number
    }

    /// `token` with its variable parts masked, and the values masked out, in order, appended to `values`.
    pub(crate) fn apply<'a>(&self, token: &'a str, values: &mut Vec<&'a str>) -> Cow<'a, str> {
        if !self.any() {
            return Cow::Borrowed(token);
        }
        // A whole token, its surrounding punctuation aside.
        let trimmed = token.trim_matches(|c: char| {
            matches!(
                c,
                '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | ',' | ';' | '"' | '\''
            )
        });
        if !trimmed.is_empty()
            && let Some(mask) = self.whole(trimmed)
        {
            values.push(trimmed);
            let start = trimmed.as_ptr() as usize - token.as_ptr() as usize;
            let end = start + trimmed.len();
            let mut out = String::with_capacity(token.len() - trimmed.len() + mask.len());
            out.push_str(&token[..start]);
            out.push_str(mask);
            out.push_str(&token[end..]);
            return Cow::Owned(out);
        }
        if self.number {
            return numbers_inside(token, values);
        }
        Cow::Borrowed(token)
    }

    fn whole(&self, t: &str) -> Option<&'static str> {
        if self.uuid && is_uuid(t) {
            return Some("<UUID>");
        }
        if self.ip && is_ipv4(t) {
            return Some("<IP>");
        }
        if self.path && is_path(t) {
            return Some("<PATH>");
        }
        if self.hex && is_hex(t) {
            return Some("<HEX>");
        }
        if self.number && is_number(t) {
            return Some("<NUM>");
        }
        None
    }
}

/// Every maximal digit run (with a leading sign after a non-alphanumeric, and a decimal part) that is not glued to
/// a letter, digit or underscore-free word: `size=42,` → `size=<NUM>,`, `blk_-12` → `blk_<NUM>`, `R02` unchanged.
fn numbers_inside<'a>(token: &'a str, values: &mut Vec<&'a str>) -> Cow<'a, str> {
    let b = token.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        let start_sign = (b[i] == b'-' || b[i] == b'+')
            && i + 1 < b.len()
            && b[i + 1].is_ascii_digit()
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if !(b[i].is_ascii_digit() || start_sign) {
            i += 1;
            continue;
        }
        let start = i;
        if start_sign {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        let glued_before = start > 0 && b[start - 1].is_ascii_alphanumeric();
        let glued_after = i < b.len() && b[i].is_ascii_alphanumeric();
        if glued_before || glued_after {
            // Part of a word such as `R02` or `3rd`: skip the rest of the word.
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            continue;
        }
        let s = out.get_or_insert_with(|| String::with_capacity(token.len()));
        s.push_str(&token[copied..start]);
        s.push_str("<NUM>");
        values.push(&token[start..i]);
        copied = i;
    }
    match out {
        None => Cow::Borrowed(token),
        Some(mut s) => {
            s.push_str(&token[copied..]);
            Cow::Owned(s)
        }
    }
}

fn is_number(t: &str) -> bool {
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    !t.is_empty()
        && t.as_bytes()[0].is_ascii_digit()
        && t.parse::<f64>().is_ok_and(f64::is_finite)
        && t.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'-' | b'+'))
}

fn is_hex(t: &str) -> bool {
    if let Some(rest) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_hexdigit());
    }
    t.len() >= 16
        && t.bytes().all(|c| c.is_ascii_hexdigit())
        && t.bytes().any(|c| c.is_ascii_digit())
}

fn is_uuid(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_ipv4(t: &str) -> bool {
    let (addr, port) = match t.rsplit_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (t, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    let mut parts = 0;
    for part in addr.split('.') {
        parts += 1;
        if part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|c| c.is_ascii_digit())
            || part.parse::<u16>().map_or(true, |v| v > 255)
        {
            return false;
        }
    }
    parts == 4
}

fn is_path(t: &str) -> bool {
    let b = t.as_bytes();
    let unix = (t.starts_with('/')
        && b.len() > 1
        && b[1] != b'/'
        && t[1..].contains(|c: char| c.is_alphanumeric()))
        || t.starts_with("~/");
    let windows = b.len() > 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\';
    (unix || windows) && !t.contains("://")
}

/// Python's `str.isspace`, which `str.split()` (Drain3's tokenizer) splits on: Unicode whitespace and the
/// information separators U+001C–U+001F.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Splits `line` into at most `max_tokens` tokens on whitespace and on each extra delimiter (Drain3 replaces the
/// delimiters with spaces, then splits); the last token keeps the rest of the line when there are more.
pub(crate) fn tokenize<'a>(
    line: &'a str,
    extra_delimiters: &[String],
    max_tokens: usize,
) -> Vec<&'a str> {
    let bytes = line.as_bytes();
    // The length of the separator starting at byte `i`, 0 when none does.
    let separator = |i: usize| -> usize {
        let b = bytes[i];
        let space = if b < 0x80 {
            usize::from(matches!(
                b,
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f
            ))
        } else {
            line[i..]
                .chars()
                .next()
                .filter(|c| is_space(*c))
                .map_or(0, char::len_utf8)
        };
        if space > 0 || extra_delimiters.is_empty() {
            return space;
        }
        extra_delimiters
            .iter()
            .find(|d| !d.is_empty() && bytes[i..].starts_with(d.as_bytes()))
            .map_or(0, String::len)
    };
    let mut tokens = Vec::with_capacity(16);
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i < bytes.len() {
        let len = separator(i);
        if len > 0 {
            if let Some(s) = start.take() {
                tokens.push(&line[s..i]);
            }
            i += len;
            continue;
        }
        if start.is_none() {
            if tokens.len() + 1 == max_tokens {
                tokens.push(line[i..].trim_end_matches(is_space));
                return tokens;
            }
            start = Some(i);
        }
        // The next character boundary.
        i += 1;
        while i < bytes.len() && (bytes[i] & 0xC0) == 0x80 {
            i += 1;
        }
    }
    if let Some(s) = start {
        tokens.push(&line[s..]);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(t: &str) -> (String, Vec<String>) {
        let mut v = Vec::new();
        let m = Masks::default().apply(t, &mut v).into_owned();
        (m, v.into_iter().map(String::from).collect())
    }

    #[test]
    fn whole_tokens_take_their_kind() {
        assert_eq!(mask("10.0.0.1:50010").0, "<IP>");
        assert_eq!(mask("(10.0.0.1)").0, "(<IP>)");
        assert_eq!(mask("123e4567-e89b-12d3-a456-426614174000").0, "<UUID>");
        assert_eq!(mask("0x00004ed8").0, "<HEX>");
        assert_eq!(mask("/var/log/syslog").0, "<PATH>");
        assert_eq!(mask("-12.5").0, "<NUM>");
        assert_eq!(mask("-12.5").1, vec!["-12.5"]);
        assert_eq!(mask("deadbeef").0, "deadbeef");
        assert_eq!(mask("http://x/y").0, "http://x/y");
    }

    #[test]
    fn numbers_inside_words_only_when_they_stand_alone() {
        assert_eq!(mask("size=42,"), ("size=<NUM>,".into(), vec!["42".into()]));
        assert_eq!(
            mask("blk_-695229586848"),
            ("blk_<NUM>".into(), vec!["-695229586848".into()])
        );
        assert_eq!(mask("R02-M1-N0-C:J12-U11").0, "R02-M1-N0-C:J12-U11");
        assert_eq!(
            mask("2005-06-03-15.42.50.675872").0,
            "<NUM>-<NUM>-<NUM>-<NUM>.<NUM>"
        );
        assert_eq!(mask("15:42:50").0, "<NUM>:<NUM>:<NUM>");
        assert_eq!(mask("3rd").0, "3rd");
        assert_eq!(mask("héllo=7").0, "héllo=<NUM>");
    }

    #[test]
    fn no_masks_leave_tokens_alone() {
        let mut v = Vec::new();
        assert_eq!(Masks::none().apply("42", &mut v), "42");
        assert!(v.is_empty());
    }

    #[test]
    fn tokens_split_on_whitespace_and_extra_delimiters() {
        assert_eq!(tokenize("  a  b\tc ", &[], 100), vec!["a", "b", "c"]);
        assert_eq!(
            tokenize("a=b,,c", &["=".into(), ",".into()], 100),
            vec!["a", "b", "c"]
        );
        assert_eq!(tokenize("a b c d ", &[], 2), vec!["a", "b c d"]);
        assert_eq!(tokenize("a\u{1e}b", &[], 10), vec!["a", "b"]);
        assert!(tokenize("   ", &[], 10).is_empty());
    }
}
