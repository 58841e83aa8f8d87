//! `sql-watcher import-dump`: the original's import script. Creates a database on a MariaDB or PostgreSQL
//! server, imports a SQL dump into it (`mysqldump` output, or `pg_dump`'s plain format with its `COPY` blocks),
//! creates (or re-creates) an account that can only read it, and gives the details to paste into the source form.

use std::path::Path;

use sea_orm::sqlx::{self, Connection, Executor, MySqlConnection, PgConnection};
use serde::Serialize;

use crate::error::WatcherError;

type Result<T> = std::result::Result<T, WatcherError>;

/// Largest dump read (it is read whole).
pub const MAX_DUMP_BYTES: u64 = 2 << 30;

/// What to import and for whom.
#[derive(Clone)]
pub struct ImportRequest {
    /// The dump file.
    pub dump: std::path::PathBuf,
    /// The database to create.
    pub database: String,
    /// The read-only account.
    pub user: String,
    /// Its password.
    pub password: String,
    /// An administrator's connection URL (`mysql://root@host:3306/`, `postgres://postgres@host:5432/postgres`).
    pub admin_url: String,
    /// Drop the database first when it exists (otherwise an existing database is an error).
    pub replace: bool,
}

impl std::fmt::Debug for ImportRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportRequest")
            .field("dump", &self.dump)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("admin_url", &anomaly_store::redact_url(&self.admin_url))
            .field("replace", &self.replace)
            .finish_non_exhaustive()
    }
}

/// The connection details of the imported database, as the source form names them.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// `mysql` or `postgres`.
    pub engine: &'static str,
    /// Host, as in the administrator's URL.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The database.
    pub name: String,
    /// The read-only account.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Statements (MariaDB) or statement groups and `COPY` blocks (PostgreSQL) run.
    pub statements: u64,
}

/// An identifier the helper accepts for databases and accounts: a letter or `_`, then letters, digits and `_`,
/// at most 63 characters (PostgreSQL's limit), so it never needs quoting rules.
fn check_identifier(field: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(WatcherError::invalid(
            field,
            format!(
                "{name:?}: letters, digits and _ only, starting with a letter or _, at most 63"
            ),
        ))
    }
}

/// A SQL string literal (single quotes doubled; backslashes doubled for MariaDB).
fn literal(s: &str, mysql: bool) -> String {
    let mut out = s.replace('\'', "''");
    if mysql {
        out = out.replace('\\', "\\\\");
    }
    format!("'{out}'")
}

fn db_error(what: &str, e: sqlx::Error) -> WatcherError {
    WatcherError::Source(format!("{what}: {e}"))
}

/// Host and port of a URL (`scheme://user:pass@host:port/db`).
fn host_port(url: &str, default_port: u16) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_matches(['[', ']']).to_string(),
            p.parse().unwrap_or(default_port),
        ),
        _ => (host_port.trim_matches(['[', ']']).to_string(), default_port),
    }
}

/// The URL with its database (path) replaced.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{database}{query}")
}

/// Runs the import.
///
/// # Errors
/// [`WatcherError::Invalid`] for an unusable name or URL, an existing database without `replace`;
/// [`WatcherError::Io`] when the dump cannot be read; [`WatcherError::Source`] when the server refuses a step
/// (the step is named).
pub async fn import_dump(req: &ImportRequest) -> Result<ImportReport> {
    check_identifier("database", &req.database)?;
    check_identifier("user", &req.user)?;
    if req.password.is_empty() {
        return Err(WatcherError::invalid(
            "password",
            "give the read-only account a password",
        ));
    }
    let size = std::fs::metadata(&req.dump)
        .map_err(|e| io(&req.dump, e))?
        .len();
    if size > MAX_DUMP_BYTES {
        return Err(WatcherError::invalid(
            "dump",
            format!("{size} bytes, at most {MAX_DUMP_BYTES}"),
        ));
    }
    let dump = std::fs::read_to_string(&req.dump).map_err(|e| io(&req.dump, e))?;
    if req.admin_url.starts_with("mysql://") || req.admin_url.starts_with("mariadb://") {
        import_mysql(req, &dump).await
    } else if req.admin_url.starts_with("postgres://") || req.admin_url.starts_with("postgresql://")
    {
        import_postgres(req, &dump).await
    } else {
        Err(WatcherError::invalid(
            "admin-url",
            "a mysql:// or postgres:// URL of an account that can create databases and users",
        ))
    }
}

fn io(path: &Path, e: std::io::Error) -> WatcherError {
    WatcherError::Io {
        what: format!("reading {}", path.display()),
        source: e,
    }
}

async fn import_mysql(req: &ImportRequest, dump: &str) -> Result<ImportReport> {
    let url = req.admin_url.replacen("mariadb://", "mysql://", 1);
    let mut c = MySqlConnection::connect(&url)
        .await
        .map_err(|e| db_error("connecting with the administrator's URL", e))?;
    let db = &req.database;
    let exists: Option<(String,)> =
        sqlx::query_as("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
            .bind(db)
            .fetch_optional(&mut c)
            .await
            .map_err(|e| db_error("looking for the database", e))?;
    if exists.is_some() {
        if !req.replace {
            return Err(WatcherError::invalid(
                "database",
                format!("{db} exists; pass --replace to drop and re-create it"),
            ));
        }
        c.execute(format!("DROP DATABASE `{db}`").as_str())
            .await
            .map_err(|e| db_error("dropping the database", e))?;
    }
    c.execute(format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4").as_str())
        .await
        .map_err(|e| db_error("creating the database", e))?;
    c.execute(format!("USE `{db}`").as_str())
        .await
        .map_err(|e| db_error("using the database", e))?;
    // The dump runs as one multi-statement text query, as the `mysql` client would send it.
    let statements = sqlx::raw_sql(dump)
        .execute(&mut c)
        .await
        .map_err(|e| db_error("importing the dump", e))?;
    let user = literal(&req.user, true);
    for (step, sql) in [
        (
            "dropping the old account",
            format!("DROP USER IF EXISTS {user}@'%'"),
        ),
        (
            "creating the account",
            format!(
                "CREATE USER {user}@'%' IDENTIFIED BY {}",
                literal(&req.password, true)
            ),
        ),
        (
            "granting SELECT",
            format!("GRANT SELECT ON `{db}`.* TO {user}@'%'"),
        ),
        ("flushing privileges", "FLUSH PRIVILEGES".to_string()),
    ] {
        c.execute(sql.as_str())
            .await
            .map_err(|e| db_error(step, e))?;
    }
    let (host, port) = host_port(&url, 3306);
    Ok(ImportReport {
        engine: "mysql",
        host,
        port,
        name: db.clone(),
        user: req.user.clone(),
        password: req.password.clone(),
        statements: statements.rows_affected(),
    })
}

async fn import_postgres(req: &ImportRequest, dump: &str) -> Result<ImportReport> {
    let mut admin = PgConnection::connect(&req.admin_url)
        .await
        .map_err(|e| db_error("connecting with the administrator's URL", e))?;
    let db = &req.database;
    let user = &req.user;
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(db)
        .fetch_optional(&mut admin)
        .await
        .map_err(|e| db_error("looking for the database", e))?;
    if exists.is_some() {
        if !req.replace {
            return Err(WatcherError::invalid(
                "database",
                format!("{db} exists; pass --replace to drop and re-create it"),
            ));
        }
        admin
            .execute(format!("DROP DATABASE \"{db}\" WITH (FORCE)").as_str())
            .await
            .map_err(|e| db_error("dropping the database", e))?;
    }
    admin
        .execute(format!("CREATE DATABASE \"{db}\"").as_str())
        .await
        .map_err(|e| db_error("creating the database", e))?;
    let role: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(user)
        .fetch_optional(&mut admin)
        .await
        .map_err(|e| db_error("looking for the account", e))?;
    let password = literal(&req.password, false);
    let account = if role.is_some() {
        format!(
            "ALTER ROLE \"{user}\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {password}"
        )
    } else {
        format!("CREATE ROLE \"{user}\" WITH LOGIN PASSWORD {password}")
    };
    admin
        .execute(account.as_str())
        .await
        .map_err(|e| db_error("creating the account", e))?;
    // An existing account leaves every role it was a member of (it must not inherit write rights).
    let memberships: Vec<(String,)> = sqlx::query_as(
        "SELECT r.rolname::text FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
         JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1",
    )
    .bind(user)
    .fetch_all(&mut admin)
    .await
    .map_err(|e| db_error("listing the account's roles", e))?;
    for (role,) in memberships {
        let role = role.replace('"', "\"\"");
        admin
            .execute(format!("REVOKE \"{role}\" FROM \"{user}\"").as_str())
            .await
            .map_err(|e| db_error("revoking a role of the account", e))?;
    }
    // Nobody but the granted gets in, or makes temporary tables, by PUBLIC's defaults.
    admin
        .execute(format!("REVOKE ALL ON DATABASE \"{db}\" FROM PUBLIC").as_str())
        .await
        .map_err(|e| db_error("revoking PUBLIC's rights on the database", e))?;
    admin
        .execute(format!("ALTER ROLE \"{user}\" SET default_transaction_read_only = on").as_str())
        .await
        .map_err(|e| db_error("making the account read-only", e))?;
    admin
        .execute(format!("GRANT CONNECT ON DATABASE \"{db}\" TO \"{user}\"").as_str())
        .await
        .map_err(|e| db_error("granting CONNECT", e))?;
    drop(admin);

    let mut c = PgConnection::connect(&with_database(&req.admin_url, db))
        .await
        .map_err(|e| db_error("connecting to the new database", e))?;
    let statements = run_pg_dump(&mut c, dump).await?;
    let schemas: Vec<(String,)> = sqlx::query_as(
        "SELECT nspname::text FROM pg_namespace \
         WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
    )
    .fetch_all(&mut c)
    .await
    .map_err(|e| db_error("listing the schemas", e))?;
    for (schema,) in schemas {
        let s = schema.replace('"', "\"\"");
        for (step, sql) in [
            (
                "revoking PUBLIC's CREATE",
                format!("REVOKE CREATE ON SCHEMA \"{s}\" FROM PUBLIC"),
            ),
            (
                "revoking rights the dump gave",
                format!(
                    "REVOKE ALL ON ALL TABLES IN SCHEMA \"{s}\" FROM PUBLIC, \"{user}\"; \
                     REVOKE ALL ON ALL SEQUENCES IN SCHEMA \"{s}\" FROM PUBLIC, \"{user}\"; \
                     REVOKE ALL ON ALL ROUTINES IN SCHEMA \"{s}\" FROM PUBLIC, \"{user}\""
                ),
            ),
            (
                "granting USAGE",
                format!("GRANT USAGE ON SCHEMA \"{s}\" TO \"{user}\""),
            ),
            (
                "granting SELECT",
                format!("GRANT SELECT ON ALL TABLES IN SCHEMA \"{s}\" TO \"{user}\""),
            ),
        ] {
            c.execute(sql.as_str())
                .await
                .map_err(|e| db_error(step, e))?;
        }
    }
    let (host, port) = host_port(&req.admin_url, 5432);
    Ok(ImportReport {
        engine: "postgres",
        host,
        port,
        name: db.clone(),
        user: user.clone(),
        password: req.password.clone(),
        statements,
    })
}

/// Runs a plain `pg_dump` script: SQL between `COPY … FROM stdin;` blocks as simple queries, each block's data
/// through `COPY`; `psql` meta-commands (lines starting with `\`) are skipped.
async fn run_pg_dump(c: &mut PgConnection, dump: &str) -> Result<u64> {
    let mut sql = String::new();
    let mut steps = 0u64;
    let mut lines = dump.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let upper = trimmed.to_ascii_uppercase();
        if upper.starts_with("COPY ") && upper.trim_end().ends_with("FROM STDIN;") {
            if !sql.trim().is_empty() {
                sqlx::raw_sql(&sql)
                    .execute(&mut *c)
                    .await
                    .map_err(|e| db_error("importing the dump", e))?;
                steps += 1;
                sql.clear();
            }
            let mut data = String::new();
            for row in lines.by_ref() {
                if row == "\\." {
                    break;
                }
                data.push_str(row);
                data.push('\n');
            }
            let mut copy = c
                .copy_in_raw(trimmed)
                .await
                .map_err(|e| db_error("starting a COPY block", e))?;
            copy.send(data.as_bytes())
                .await
                .map_err(|e| db_error("sending a COPY block", e))?;
            copy.finish()
                .await
                .map_err(|e| db_error("finishing a COPY block", e))?;
            steps += 1;
        } else if trimmed.starts_with('\\') {
            continue;
        } else if upper.starts_with("ALTER ") && upper.contains(" OWNER TO ") {
            // Ownership by roles of the dumped server, which this one may not have: the administrator owns all.
            continue;
        } else {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    if !sql.trim().is_empty() {
        sqlx::raw_sql(&sql)
            .execute(&mut *c)
            .await
            .map_err(|e| db_error("importing the dump", e))?;
        steps += 1;
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_urls_and_literals() {
        assert!(check_identifier("database", "shop_2026").is_ok());
        assert!(check_identifier("database", "shop; DROP").is_err());
        assert!(check_identifier("user", "1abc").is_err());
        assert_eq!(literal("it's \\ fine", true), "'it''s \\\\ fine'");
        assert_eq!(literal("it's", false), "'it''s'");
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/test", 1),
            ("127.0.0.1".into(), 5432)
        );
        assert_eq!(host_port("mysql://root:pw@db/", 3306), ("db".into(), 3306));
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "shop"),
            "postgres://u:p@h:5432/shop?sslmode=disable"
        );
        assert_eq!(
            with_database("mysql://root@h:3306", "shop"),
            "mysql://root@h:3306/shop"
        );
    }
}
