//! The read-only guard: accepts one query (`SELECT`, `WITH … SELECT`, set operations) that neither writes, locks,
//! exports nor calls a function known to have side effects, and nothing else.
//!
//! The guard parses the SQL with [`sqlparser`] in the source's own dialect, so string literals, quoted identifiers,
//! comments, escapes and operators are read the way that database reads them, then walks the whole syntax tree.
//! It is defence in depth, not the boundary: [`SqlSource`](super::SqlSource) also runs every fetch in a read-only
//! transaction with a statement timeout, and the real boundary is the database account, which should only be
//! granted `SELECT` on what the query reads.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, Select, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::error::{Result, StoreError};

/// The SQL dialect a query is written in: the database a [`SqlSource`](crate::SqlSource) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SqlDialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
    /// SQLite.
    Sqlite,
}

impl SqlDialect {
    /// The dialect of a database URL (`postgres://`/`postgresql://`, `mysql://`/`mariadb://`, `sqlite:`).
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUrl`] for another scheme (the error names the scheme only, never the URL).
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(SqlDialect::Postgres)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Ok(SqlDialect::MySql)
        } else if url.starts_with("sqlite:") {
            Ok(SqlDialect::Sqlite)
        } else {
            Err(StoreError::UnsupportedUrl {
                scheme: url.split(':').next().unwrap_or_default().to_string(),
            })
        }
    }

    /// `postgres`, `mysql` or `sqlite`.
    pub fn name(self) -> &'static str {
        match self {
            SqlDialect::Postgres => "postgres",
            SqlDialect::MySql => "mysql",
            SqlDialect::Sqlite => "sqlite",
        }
    }

    fn parser_dialect(self) -> Box<dyn Dialect> {
        match self {
            SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
            SqlDialect::MySql => Box::new(MySqlDialect {}),
            SqlDialect::Sqlite => Box::new(SQLiteDialect {}),
        }
    }
}

impl std::fmt::Display for SqlDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Functions refused wherever they are called, by the last part of their name, case-insensitively: they sleep or
/// wait, change settings or sequences, reach files or other servers, take locks, signal other sessions, load code,
/// run SQL text of their own, or write to the server's log, WAL or replication state.
const DENIED_FUNCTIONS: &[&str] = &[
    // Sleeping and waiting.
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "sleep",
    "benchmark",
    "master_pos_wait",
    "source_pos_wait",
    "master_gtid_wait",
    "wait_for_executed_gtid_set",
    "wait_until_sql_thread_after_gtids",
    // Settings and sequences.
    "set_config",
    "nextval",
    "setval",
    "last_insert_id",
    // Files, programs and extensions.
    "pg_read_file",
    "pg_read_binary_file",
    "pg_stat_file",
    "load_file",
    "load_extension",
    "writefile",
    "readfile",
    "edit",
    "fts3_tokenizer",
    "sys_exec",
    "sys_eval",
    // Locks and other sessions.
    "get_lock",
    "release_lock",
    "release_all_locks",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_notify",
    // SQL text run by a function.
    "ts_stat",
    "ts_rewrite",
    // Server state.
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_logical_emit_message",
    "pg_promote",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_log_backend_memory_contexts",
    "pg_import_system_collations",
];

/// Name prefixes refused the same way: families of functions (`lo_import`, `dblink_exec`, `pg_advisory_lock`,
/// `pg_ls_dir`, `query_to_xml`, …).
const DENIED_PREFIXES: &[&str] = &[
    "lo_",
    "dblink",
    "pg_advisory_",
    "pg_try_advisory_",
    "pg_ls_",
    "pg_file_",
    "pg_stat_reset",
    "pg_replication_",
    "pg_create_",
    "pg_drop_replication_",
    "pg_wal_replay_",
    "pg_background_",
    "query_to_",
    "cursor_to_",
    "crosstab",
    "pg_logical_",
    "pg_copy_",
    "pg_stat_statements_reset",
];

/// Whether a function of this name (the last part, unquoted) is refused.
fn is_denied(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    DENIED_FUNCTIONS.contains(&name.as_str()) || DENIED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Checks that `sql` is one read-only query in `dialect` and returns it without a trailing `;`, trailing comments
/// and surrounding whitespace, ready to be wrapped as a sub-query.
///
/// Accepted: exactly one statement that is a query (`SELECT`, `WITH … SELECT`, `UNION`/`INTERSECT`/`EXCEPT`) with
/// no data-modifying part anywhere (no `INSERT`/`UPDATE`/`DELETE`/`MERGE` in a CTE), no `INTO` (`SELECT INTO`,
/// `INTO OUTFILE`, `INTO DUMPFILE`, `INTO @variable`), no locking clause (`FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE
/// MODE`), and no call, anywhere in the tree, of a function with side effects (sleeps such as `pg_sleep` and
/// `sleep`, `set_config`, sequence mutators, file access, `dblink*`, advisory locks, `pg_terminate_backend`,
/// `load_extension`, functions that run SQL text such as `query_to_xml`, …), matched case-insensitively on the last
/// part of the name, quoted or schema-qualified. MySQL executable comments (`/*! … */`, `/*M! … */`),
/// PostgreSQL's Unicode-escaped identifiers (`U&"…"`) and whitespace beyond ASCII (a no-break space after `--`)
/// are refused wherever they appear, even inside a literal: the parser and the server would read them differently.
///
/// This is defence in depth: the database account's read-only grant is the real boundary (a user-defined function
/// can do anything its owner allows, and the guard cannot know what it does).
///
/// ```
/// use anomaly_store::{SqlDialect, check_read_only_select};
///
/// let pg = SqlDialect::Postgres;
/// assert_eq!(check_read_only_select("SELECT * FROM orders; -- all\n", pg)?, "SELECT * FROM orders");
/// assert!(check_read_only_select("SELECT 1; DROP TABLE orders", pg).is_err());
/// assert!(check_read_only_select("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", pg).is_err());
/// assert!(check_read_only_select(r#"SELECT "pg_sleep"(3600)"#, pg).is_err());
/// assert!(check_read_only_select("SELECT 1--1, SLEEP(3600)", SqlDialect::MySql).is_err());
/// # Ok::<(), anomaly_store::StoreError>(())
/// ```
///
/// # Errors
/// [`StoreError::NotReadOnly`] saying what was refused: an empty query, text the parser cannot read (with its
/// message), several statements, a statement that is not a query, a data-modifying part, `INTO`, a locking clause,
/// a denied function or a MySQL executable comment.
pub fn check_read_only_select(sql: &str, dialect: SqlDialect) -> Result<&str> {
    let accepted = check_once(sql, dialect)?;
    // What is returned is what runs: it must pass as it is, and read the same once the trailing `;`, comments and
    // whitespace are gone (found by fuzzing: MySQL reads `@` before a carriage return and `@` at the end apart).
    match check_once(accepted, dialect) {
        Ok(again) if again == accepted => Ok(accepted),
        Ok(_) => Err(StoreError::NotReadOnly {
            reason: "it reads differently once its trailing semicolon, comments and whitespace are removed".into(),
        }),
        Err(StoreError::NotReadOnly { reason }) => Err(StoreError::NotReadOnly {
            reason: format!("once its trailing semicolon, comments and whitespace are removed, {reason}"),
        }),
        Err(e) => Err(e),
    }
}

/// One pass of [`check_read_only_select`]: the checks on `sql` as given, and where its statement ends.
fn check_once(sql: &str, dialect: SqlDialect) -> Result<&str> {
    let refuse = |reason: String| StoreError::NotReadOnly { reason };
    if dialect == SqlDialect::MySql && has_executable_comment(sql) {
        return Err(refuse(
            "it holds a MySQL executable comment (`/*!` or `/*M!`), which the server runs as SQL; it is refused \
             wherever it appears, even inside a string literal"
                .into(),
        ));
    }
    // PostgreSQL reads `U&"…"` as an identifier with Unicode escapes (`U&"pg\005fsleep"` is `pg_sleep`); the
    // parser reads `U & "…"`, a name it cannot see through. Refused anywhere, like executable comments.
    if sql.to_ascii_lowercase().contains("u&\"") {
        return Err(refuse(
            "it holds a Unicode-escaped identifier (`U&\"…\"`), which hides the name the server reads; write the \
             name plainly"
                .into(),
        ));
    }
    // Whitespace beyond ASCII separates tokens for the parser but not for every server (MySQL starts a `--`
    // comment only before ASCII whitespace): text the two read differently is refused.
    if let Some(c) = sql.chars().find(|c| c.is_whitespace() && !c.is_ascii()) {
        return Err(refuse(format!(
            "it holds the non-ASCII whitespace character U+{:04X}, which servers and the parser read differently; \
             use plain spaces",
            u32::from(c)
        )));
    }
    let parser_dialect = dialect.parser_dialect();
    let tokens = Tokenizer::new(parser_dialect.as_ref(), sql)
        .tokenize_with_location()
        .map_err(|e| refuse(format!("it cannot be read as {dialect} SQL: {e}")))?;
    let meaningful: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .collect();
    // Where the statement ends: after its last token, before one final `;`.
    let last = match meaningful.as_slice() {
        [] => None,
        [.., before, last] if last.token == Token::SemiColon => Some(*before),
        [.., last] => Some(*last),
    };
    let Some(last) = last.filter(|t| t.token != Token::SemiColon) else {
        return Err(refuse("the query is empty".into()));
    };
    let first = meaningful[0];
    let end = byte_offset(sql, last.span.end);

    let statements = Parser::new(parser_dialect.as_ref())
        .with_tokens_with_locations(tokens.clone())
        .parse_statements()
        .map_err(|e| refuse(format!("it cannot be parsed as {dialect} SQL: {e}")))?;
    let query = match statements.as_slice() {
        [] => return Err(refuse("the query is empty".into())),
        [Statement::Query(query)] => query,
        [_] => {
            return Err(refuse(format!(
                "it starts with `{}`; only a query (SELECT, WITH … SELECT, UNION …) is accepted",
                first.token
            )));
        }
        _ => return Err(refuse("more than one statement".into())),
    };
    if let ControlFlow::Break(reason) = query.visit(&mut ReadOnlyVisitor) {
        return Err(refuse(reason));
    }
    Ok(sql[..end].trim())
}

/// `/*!` or `/*M!` (MariaDB) anywhere in the text.
fn has_executable_comment(sql: &str) -> bool {
    sql.match_indices("/*").any(|(i, _)| {
        let rest = &sql[i + 2..];
        rest.starts_with('!') || rest.starts_with("M!") || rest.starts_with("m!")
    })
}

/// The byte offset of a tokenizer location (1-based line, 1-based column counted in characters).
fn byte_offset(sql: &str, location: Location) -> usize {
    let mut line = 1;
    let mut column = 1;
    for (i, c) in sql.char_indices() {
        if line == location.line && column == location.column {
            return i;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    sql.len()
}

/// Walks a query's tree; breaks with the reason of the first thing that is not read-only.
struct ReadOnlyVisitor;

impl Visitor for ReadOnlyVisitor {
    type Break = String;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        // The top-level query is visited as a `Query`: any statement met is nested (a CTE or sub-query that
        // inserts, updates, deletes or merges).
        let text = statement.to_string();
        let keyword = text.split_whitespace().next().unwrap_or_default();
        ControlFlow::Break(format!(
            "a data-modifying `{keyword}` inside the query is not allowed"
        ))
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if let Some(lock) = query.locks.first() {
            return ControlFlow::Break(format!("`{lock}` locks rows"));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<String> {
        if let Some(into) = &select.into {
            return ControlFlow::Break(format!(
                "`{}` writes the result somewhere; a source only reads",
                into.to_string().trim()
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        match expr {
            Expr::Function(function) => check_function(&function.name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, table_factor: &TableFactor) -> ControlFlow<String> {
        match table_factor {
            // `FROM pg_ls_dir('.')`, `FROM dblink(…)`: a table function.
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => check_function(name),
            _ => ControlFlow::Continue(()),
        }
    }
}

fn check_function(name: &ObjectName) -> ControlFlow<String> {
    let last = match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident.value.as_str(),
        Some(ObjectNamePart::Function(function)) => function.name.value.as_str(),
        None => return ControlFlow::Continue(()),
    };
    if is_denied(last) {
        return ControlFlow::Break(format!(
            "the function `{name}` has side effects (it sleeps, locks, writes, reaches files or other servers, or \
             runs SQL text)"
        ));
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use super::{SqlDialect, check_read_only_select as check};
    use proptest::prelude::*;

    const ALL: [SqlDialect; 3] = [SqlDialect::Postgres, SqlDialect::MySql, SqlDialect::Sqlite];

    #[test]
    fn plain_queries_pass_and_lose_their_semicolon_and_trailing_comments() {
        for (sql, dialects) in [
            ("SELECT * FROM orders", &ALL[..]),
            (
                "  select id, ts from orders where status = 'ok' order by ts ;  ",
                &ALL[..],
            ),
            (
                "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent",
                &ALL[..],
            ),
            (
                "SELECT replace_col, created_at FROM t WHERE note = 'please DROP TABLE x; INSERT'",
                &ALL[..],
            ),
            ("SELECT a FROM t UNION ALL SELECT b FROM u", &ALL[..]),
            ("SELECT lower(name), count(*) FROM t GROUP BY 1", &ALL[..]),
            (
                "SELECT \"update\" FROM t -- ; DELETE FROM t\n",
                &[SqlDialect::Postgres, SqlDialect::Sqlite][..],
            ),
            (
                "SELECT `delete` FROM t # ; DELETE FROM t\n",
                &[SqlDialect::MySql][..],
            ),
            (
                "SELECT $$; DROP TABLE t$$ AS s /* ; drop table t */",
                &[SqlDialect::Postgres][..],
            ),
            ("SELECT * FROM t WHERE name = 'it''s; fine'", &ALL[..]),
            (
                "SELECT share, \"lock\" FROM t ORDER BY share",
                &[SqlDialect::Postgres, SqlDialect::Sqlite][..],
            ),
            (
                "SELECT pg_sleeper, sleep_minutes FROM t WHERE sleep_minutes > 1",
                &ALL[..],
            ),
        ] {
            for &dialect in dialects {
                let out = check(sql, dialect).unwrap_or_else(|e| panic!("{dialect} {sql}: {e}"));
                assert!(
                    !out.ends_with(';')
                        && out == out.trim()
                        && !out.contains("--")
                        && !out.contains('#'),
                    "{out}"
                );
            }
        }
        assert_eq!(
            check("SELECT 1;", SqlDialect::Postgres).unwrap(),
            "SELECT 1"
        );
        // Escaped quotes keep a would-be call inside its literal, read as each server reads it.
        for (sql, dialect) in [
            (r#"SELECT "a\" , SLEEP(3600), \"" AS x"#, SqlDialect::MySql),
            (r"SELECT 'a\' , SLEEP(3600), \'' AS x", SqlDialect::MySql),
            (r"SELECT 'a\' ; DELETE FROM t; --'", SqlDialect::MySql),
            (
                r"SELECT E'a\' , pg_sleep(3600), \'' AS x",
                SqlDialect::Postgres,
            ),
        ] {
            check(sql, dialect).unwrap_or_else(|e| panic!("{dialect} {sql}: {e}"));
        }
        assert_eq!(
            check("SELECT 1 -- last\n; -- after\n", SqlDialect::Sqlite).unwrap(),
            "SELECT 1"
        );
        assert_eq!(
            check("SELECT 'é' AS \"ü\" /* c */ ;", SqlDialect::Postgres).unwrap(),
            "SELECT 'é' AS \"ü\""
        );
    }

    #[test]
    fn writes_locks_and_several_statements_are_refused() {
        for (sql, says) in [
            ("", "empty"),
            ("  -- only a comment\n", "empty"),
            (";", "empty"),
            ("DELETE FROM orders", "starts with `DELETE`"),
            ("SELECT 1; DROP TABLE orders", "more than one statement"),
            (
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "`DELETE`",
            ),
            (
                "WITH d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM d",
                "`INSERT`",
            ),
            ("SELECT * INTO backup FROM orders", "INTO"),
            ("SELECT * FROM orders FOR UPDATE", "`FOR UPDATE` locks rows"),
            ("SELECT * FROM orders FOR NO KEY UPDATE", "refused"),
            ("SELECT * FROM orders FOR SHARE", "locks rows"),
            (
                "SELECT 'a\\' ; DELETE FROM t; --'",
                "more than one statement",
            ),
            ("SELECT pg_sleep(10)", "`pg_sleep`"),
            ("SELECT nextval('s')", "`nextval`"),
            ("SELECT 'unterminated", "cannot be read"),
            ("SELECT 1 /* open", "cannot be read"),
            ("SELECT FROM WHERE", "cannot be parsed"),
        ] {
            let err = check(sql, SqlDialect::Postgres).expect_err(sql).to_string();
            assert!(err.contains(says), "{sql}: {err}");
        }
        for (sql, says) in [
            ("SELECT * FROM t INTO OUTFILE '/tmp/x'", "refused"),
            ("SELECT * FROM t INTO DUMPFILE '/tmp/x'", "refused"),
            ("SELECT * FROM orders LOCK IN SHARE MODE", "refused"),
            ("SELECT LOAD_FILE('/etc/passwd')", "`LOAD_FILE`"),
            ("SELECT x INTO @v FROM t", "INTO"),
        ] {
            let err = check(sql, SqlDialect::MySql).expect_err(sql).to_string();
            assert!(err.contains(says), "{sql}: {err}");
        }
    }

    /// Found by the `sql_guard` fuzz target: MySQL accepted `SELECT ELB @` followed by carriage returns, and returned
    /// the text without them, which no longer parses. What is returned must pass as itself.
    #[test]
    fn what_is_returned_passes_as_itself() {
        let sql = format!("SELECT \r\r\r\rELB{}@\r\r", "\r".repeat(42));
        for dialect in ALL {
            if let Ok(accepted) = check(&sql, dialect) {
                assert_eq!(check(accepted, dialect).unwrap(), accepted, "{dialect}");
            }
        }
        assert!(check(&sql, SqlDialect::MySql).is_err());
    }

    /// The reviewer's bypasses of the old lexer, each accepted before the parser replaced it.
    #[test]
    fn known_bypasses_are_refused() {
        let pg = SqlDialect::Postgres;
        let my = SqlDialect::MySql;
        for (sql, dialect, says) in [
            (r#"SELECT "pg_sleep"(3600)"#, pg, "pg_sleep"),
            (r#"SELECT "PG_CATALOG"."PG_SLEEP"(3600)"#, pg, "PG_SLEEP"),
            ("SELECT pg_catalog.pg_sleep(3600)", pg, "pg_sleep"),
            ("SELECT pg_sleep_for('1 hour')", pg, "pg_sleep_for"),
            (
                "SELECT pg_sleep_until(now() + interval '1 hour')",
                pg,
                "pg_sleep_until",
            ),
            // `#` is PostgreSQL's XOR, not a comment: what follows it is read.
            ("SELECT 1 # 2, pg_sleep(3600)", pg, "pg_sleep"),
            // `--` is a comment in MySQL only when followed by whitespace.
            ("SELECT 1--1, SLEEP(3600)", my, "SLEEP"),
            ("SELECT 1 /*! , SLEEP(3600) */", my, "executable comment"),
            ("SELECT 1 /*M! , SLEEP(3600) */", my, "executable comment"),
            (
                "SELECT 1 /*!50000 , SLEEP(3600) */",
                my,
                "executable comment",
            ),
            // Unicode-escaped identifiers on PostgreSQL: `U&"pg\005fsleep"` is pg_sleep.
            (r#"SELECT U&"pg\005fsleep"(3600)"#, pg, "Unicode-escaped"),
            (
                r#"SELECT u&"set\005fconfig"('a', 'b', false)"#,
                pg,
                "Unicode-escaped",
            ),
            // `--` before a no-break space: a comment to the parser, not to MySQL.
            (
                "SELECT 1 --\u{a0}x, SLEEP(3600) FROM (SELECT 1 AS `\u{a0}x`) t",
                my,
                "U+00A0",
            ),
            (
                "SELECT * FROM crosstab('SELECT 1') AS t(a int)",
                pg,
                "crosstab",
            ),
            (
                "SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)",
                pg,
                "pg_logical_slot_get_changes",
            ),
            // Backslash escapes in MySQL's double-quoted strings.
            (r#"SELECT "\"", SLEEP(3600), "\"""#, my, "SLEEP"),
            // E'…' strings with backslash escapes on PostgreSQL.
            (r"SELECT E'\'', pg_sleep(3600), E'\''", pg, "pg_sleep"),
            (
                "SELECT set_config('default_transaction_read_only', 'off', false)",
                pg,
                "set_config",
            ),
            ("SELECT * FROM pg_ls_dir('.')", pg, "pg_ls_dir"),
            (
                "SELECT * FROM dblink('host=x', 'DELETE FROM t') AS t(a int)",
                pg,
                "dblink",
            ),
            (
                "SELECT query_to_xml('DELETE FROM t', true, true, '')",
                pg,
                "query_to_xml",
            ),
            ("SELECT pg_advisory_lock(1)", pg, "pg_advisory_lock"),
            ("SELECT lo_import('/etc/passwd')", pg, "lo_import"),
            (
                "SELECT a FROM t WHERE a IN (SELECT pg_sleep(1))",
                pg,
                "pg_sleep",
            ),
            (
                "SELECT a FROM t UNION SELECT BENCHMARK(1000000000, md5('x'))",
                my,
                "BENCHMARK",
            ),
            (
                "SELECT count(*) OVER (PARTITION BY sleep(1)) FROM t",
                my,
                "sleep",
            ),
            ("SELECT GET_LOCK('x', 10)", my, "GET_LOCK"),
            (
                "SELECT load_extension('evil')",
                SqlDialect::Sqlite,
                "load_extension",
            ),
        ] {
            let err = check(sql, dialect)
                .expect_err(&format!("{dialect}: {sql}"))
                .to_string();
            assert!(err.contains(says), "{dialect} {sql}: {err}");
        }
    }

    proptest! {
        /// A literal may hold anything, hostile SQL included: it never turns a query into a refused one, and the
        /// guard never panics on arbitrary text.
        #[test]
        fn literals_are_opaque(s in ".*") {
            // Refused wherever they appear, literals included (documented): the rest must pass.
            let refused_anywhere = s.to_ascii_lowercase().contains("u&\"")
                || s.chars().any(|c| c.is_whitespace() && !c.is_ascii());
            if refused_anywhere {
                for dialect in ALL {
                    prop_assert!(check(&s, dialect).is_err());
                }
                return Ok(());
            }
            let quoted = s.replace('\'', "''");
            let sql = format!("SELECT * FROM t WHERE note = '{quoted}'");
            for dialect in [SqlDialect::Postgres, SqlDialect::Sqlite] {
                prop_assert!(check(&sql, dialect).is_ok(), "{} {}", dialect, sql);
            }
            let my = format!("SELECT * FROM t WHERE note = '{}'", s.replace('\\', "\\\\").replace('\'', "''"));
            if !my.contains("/*!") && !my.to_ascii_lowercase().contains("/*m!") {
                prop_assert!(check(&my, SqlDialect::MySql).is_ok(), "{}", my);
            }
            for dialect in ALL {
                let _ = check(&s, dialect);
            }
        }
    }
}
