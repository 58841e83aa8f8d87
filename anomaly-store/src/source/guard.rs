//! The read-only guard: accepts one `SELECT` (or `WITH … SELECT`) statement and nothing else.
//!
//! The guard lexes the SQL (skipping string literals, quoted identifiers, dollar-quoted bodies and comments) and
//! looks at its keywords. It is the first of two locks: [`SqlSource`](super::SqlSource) also runs every query in a
//! read-only session, and the connection should use a read-only account. The guard catches mistakes and hostile
//! input early, with a message that says what was wrong.

use crate::error::{Result, StoreError};

/// Keywords that only appear in a `SELECT` that writes or exports: data-modifying CTEs (`WITH d AS (DELETE …)`),
/// `SELECT … INTO table` and `INTO OUTFILE`. Statement-level words (`DROP`, `ALTER`, …) need a second statement,
/// which is refused on its own; locking clauses are matched as sequences (`FOR UPDATE`, `LOCK IN SHARE MODE`) so
/// that columns named `share` or `lock` stay usable.
const FORBIDDEN: &[&str] = &[
    "INSERT", "UPDATE", "DELETE", "MERGE", "INTO", "OUTFILE", "DUMPFILE",
];

/// Word pairs that lock rows: `FOR UPDATE`, `FOR SHARE`, `FOR NO KEY UPDATE`, `FOR KEY SHARE`, `LOCK IN SHARE MODE`.
const FORBIDDEN_PAIRS: &[(&str, &str)] = &[
    ("FOR", "UPDATE"),
    ("FOR", "SHARE"),
    ("FOR", "NO"),
    ("FOR", "KEY"),
    ("LOCK", "IN"),
];

/// Functions that write or reach the file system despite appearing in a `SELECT`.
const FORBIDDEN_FUNCTIONS: &[&str] = &[
    "LOAD_FILE",
    "PG_READ_FILE",
    "PG_READ_BINARY_FILE",
    "PG_LS_DIR",
    "LO_IMPORT",
    "LO_EXPORT",
    "LO_UNLINK",
    "PG_SLEEP",
    "SLEEP",
    "BENCHMARK",
    "NEXTVAL",
    "SETVAL",
    "SET_CONFIG",
    "DBLINK",
    "DBLINK_EXEC",
    "PG_TERMINATE_BACKEND",
    "PG_CANCEL_BACKEND",
    "GET_LOCK",
    "PG_ADVISORY_LOCK",
    "LOAD_EXTENSION",
    "WRITEFILE",
    "READFILE",
];

/// Checks that `sql` is a single read-only `SELECT` (optionally introduced by `WITH`, optionally ending in one
/// `;`), and returns it without the trailing `;` and surrounding whitespace, ready to be wrapped as a sub-query.
///
/// ```
/// use anomaly_store::check_read_only_select;
///
/// assert_eq!(check_read_only_select("SELECT * FROM orders;\n")?, "SELECT * FROM orders");
/// assert!(check_read_only_select("SELECT 1; DROP TABLE orders").is_err());
/// assert!(check_read_only_select("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d").is_err());
/// # Ok::<(), anomaly_store::StoreError>(())
/// ```
///
/// # Errors
/// [`StoreError::NotReadOnly`] naming what was refused: an empty query, several statements, a first keyword other
/// than `SELECT`/`WITH`, a keyword that writes or locks (`INSERT`, `UPDATE`, `DELETE`, `INTO`, `FOR UPDATE`, …), a
/// function with side effects (`pg_sleep`, `nextval`, `load_file`, …) or an unterminated literal or comment.
pub fn check_read_only_select(sql: &str) -> Result<&str> {
    // Backslash escapes inside '…' exist in MySQL and not in standard SQL (PostgreSQL, SQLite): the query must be
    // acceptable under both readings, so that no literal can hide a statement from one of them.
    let mut end = sql.len();
    for backslash_escapes in [true, false] {
        let tokens = lex(sql, backslash_escapes)?;
        end = end.min(check_tokens(sql, &tokens)?);
    }
    Ok(sql[..end].trim())
}

/// Checks a lexed statement; returns where it ends (before a final `;`).
fn check_tokens(sql: &str, tokens: &[Token]) -> Result<usize> {
    let refuse = |reason: String| Err(StoreError::NotReadOnly { reason });
    let Some(first) = tokens.first() else {
        return refuse("the query is empty".into());
    };
    let mut end = sql.len();
    for (i, t) in tokens.iter().enumerate() {
        if t.kind == Kind::Semicolon {
            if i + 1 != tokens.len() {
                return refuse("more than one statement (a `;` before the end)".into());
            }
            end = t.start;
        }
    }
    match first.word() {
        Some("SELECT" | "WITH") => {}
        _ => {
            return refuse(format!(
                "it starts with `{}`; only SELECT (or WITH … SELECT) is accepted",
                &sql[first.start..first.end]
            ));
        }
    }
    if !tokens.iter().any(|t| t.word() == Some("SELECT")) {
        return refuse("there is no SELECT".into());
    }
    for (i, t) in tokens.iter().enumerate() {
        let Some(word) = t.word() else { continue };
        let text = &sql[t.start..t.end];
        if FORBIDDEN.contains(&word) {
            return refuse(format!("`{text}` is not allowed in a read-only SELECT"));
        }
        let next = tokens.get(i + 1);
        if let Some(second) = next.and_then(Token::word)
            && FORBIDDEN_PAIRS.contains(&(word, second))
        {
            return refuse(format!("`{text} {second}` locks rows"));
        }
        let called = next.is_some_and(|n| n.kind == Kind::OpenParen);
        if called && FORBIDDEN_FUNCTIONS.contains(&word) {
            return refuse(format!("the function `{text}` has side effects"));
        }
    }
    Ok(end)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Semicolon,
    OpenParen,
    Other,
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
    upper: Option<String>,
}

impl Token {
    fn word(&self) -> Option<&str> {
        self.upper.as_deref()
    }
}

/// Splits SQL into words and punctuation, skipping whitespace, comments (`--`, `#`, `/* */`), string literals
/// (`'…'` with `''` and backslash escapes, `E'…'`), quoted identifiers (`"…"`, `` `…` ``, `[…]`) and PostgreSQL
/// dollar-quoted bodies (`$tag$…$tag$`), which are returned as one `Other` token.
fn lex(sql: &str, backslash_escapes: bool) -> Result<Vec<Token>> {
    let unterminated = |what: &str| StoreError::NotReadOnly {
        reason: format!("an unterminated {what}"),
    };
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let other = |start, end| Token {
        kind: Kind::Other,
        start,
        end,
        upper: None,
    };
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b if b.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = find_from(bytes, i, b"\n").map_or(bytes.len(), |p| p + 1);
            }
            b'#' => i = find_from(bytes, i, b"\n").map_or(bytes.len(), |p| p + 1),
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let close =
                    find_from(bytes, i + 2, b"*/").ok_or_else(|| unterminated("/* comment"))?;
                i = close + 2;
            }
            b'\'' | b'"' | b'`' => {
                i = end_of_quoted(bytes, i, c, backslash_escapes)
                    .ok_or_else(|| unterminated("quoted string"))?;
                tokens.push(other(start, i));
            }
            b'[' => {
                i = find_from(bytes, i, b"]").ok_or_else(|| unterminated("[identifier]"))? + 1;
                tokens.push(other(start, i));
            }
            b'$' => {
                let tag_end = bytes[i + 1..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .map(|p| i + 1 + p);
                match tag_end {
                    Some(t) if bytes[t] == b'$' => {
                        let tag = &bytes[i..=t];
                        let close = find_from(bytes, t + 1, tag)
                            .ok_or_else(|| unterminated("$$ string"))?;
                        i = close + tag.len();
                    }
                    _ => {
                        // `$1`, a positional parameter.
                        i = tag_end.unwrap_or(bytes.len());
                    }
                }
                tokens.push(other(start, i));
            }
            b';' => {
                i += 1;
                tokens.push(Token {
                    kind: Kind::Semicolon,
                    start,
                    end: i,
                    upper: None,
                });
            }
            b'(' => {
                i += 1;
                tokens.push(Token {
                    kind: Kind::OpenParen,
                    start,
                    end: i,
                    upper: None,
                });
            }
            b if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                // `E'…'`, `N'…'`, `X'…'`: a prefixed literal, one token.
                if i - start == 1 && bytes.get(i) == Some(&b'\'') {
                    i = end_of_quoted(bytes, i, b'\'', backslash_escapes)
                        .ok_or_else(|| unterminated("quoted string"))?;
                    tokens.push(other(start, i));
                    continue;
                }
                tokens.push(Token {
                    kind: Kind::Word,
                    start,
                    end: i,
                    upper: Some(sql[start..i].to_ascii_uppercase()),
                });
            }
            _ => {
                i += 1;
                tokens.push(other(start, i));
            }
        }
    }
    Ok(tokens)
}

/// The index just past the quote that closes the literal opened at `open` (a doubled quote does not close it, nor,
/// in `'` strings read with `backslash_escapes`, a backslash-escaped one).
fn end_of_quoted(bytes: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> Option<usize> {
    let mut i = open + 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash_escapes && b == b'\\' && quote == b'\'' {
            i += 2;
            continue;
        }
        if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::check_read_only_select as check;
    use proptest::prelude::*;

    #[test]
    fn plain_selects_pass_and_lose_their_semicolon() {
        for sql in [
            "SELECT * FROM orders",
            "  select id, ts from orders where status = 'ok' order by ts ;  ",
            "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent",
            "SELECT replace_col, created_at FROM t WHERE note = 'please DROP TABLE x; INSERT'",
            "SELECT \"update\", `delete` FROM t -- ; DELETE FROM t\n",
            "SELECT $$; DROP TABLE t$$ AS s /* ; drop table t */",
            "SELECT * FROM t WHERE name = 'it''s; fine' AND path = 'C:\\\\dir'",
            "SELECT share, lock, \"for\" FROM t ORDER BY share",
            "SELECT lower(name), count(*) FROM t GROUP BY 1",
        ] {
            let out = check(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert!(!out.ends_with(';') && out == out.trim(), "{out}");
        }
        assert_eq!(check("SELECT 1;").unwrap(), "SELECT 1");
    }

    #[test]
    fn writes_locks_and_several_statements_are_refused() {
        for (sql, says) in [
            ("", "empty"),
            ("  -- only a comment\n", "empty"),
            ("DELETE FROM orders", "starts with `DELETE`"),
            ("SELECT 1; DROP TABLE orders", "more than one statement"),
            ("SELECT 1;;", "more than one statement"),
            (
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "`DELETE`",
            ),
            ("SELECT * INTO backup FROM orders", "`INTO`"),
            ("SELECT * FROM t INTO OUTFILE '/tmp/x'", "`INTO`"),
            ("SELECT * FROM orders FOR UPDATE", "`FOR UPDATE` locks rows"),
            (
                "SELECT * FROM orders FOR NO KEY UPDATE",
                "`FOR NO` locks rows",
            ),
            (
                "SELECT * FROM orders LOCK IN SHARE MODE",
                "`LOCK IN` locks rows",
            ),
            (
                "SELECT 'a\\' ; DELETE FROM t; --'",
                "more than one statement",
            ),
            ("SELECT pg_sleep(10)", "`pg_sleep`"),
            ("SELECT nextval('s')", "`nextval`"),
            ("SELECT LOAD_FILE('/etc/passwd')", "`LOAD_FILE`"),
            ("SELECT 'unterminated", "unterminated"),
            ("SELECT 1 /* open", "unterminated"),
            ("VALUES (1)", "starts with `VALUES`"),
            ("WITH x AS (VALUES (1)) TABLE x", "no SELECT"),
        ] {
            let err = check(sql).expect_err(sql).to_string();
            assert!(err.contains(says), "{sql}: {err}");
        }
    }

    proptest! {
        /// A literal may hold anything, hostile SQL included: it never turns a SELECT into a refused query, and
        /// the lexer never panics on arbitrary text.
        #[test]
        fn literals_are_opaque(s in ".*") {
            let quoted = s.replace('\'', "''").replace('\\', "\\\\");
            let sql = format!("SELECT * FROM t WHERE note = '{quoted}'");
            prop_assert!(check(&sql).is_ok(), "{}", sql);
            let _ = check(&s);
        }
    }
}
