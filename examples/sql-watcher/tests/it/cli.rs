//! The binary's one-shot commands: `create-user` prints a token the API accepts; `import-dump` loads a dump into
//! a new database with an account that can read it and nothing else.

use std::process::Command;

use sea_orm::{ConnectionTrait, Database};
use serde_json::json;

use crate::{App, server};

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sql-watcher")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_user_prints_a_working_token() {
    let app = App::start(&[]).await;
    let out = Command::new(binary())
        .args(["create-user", "--username", "cli-user"])
        .env("DATABASE_URL", &app.config.database_url)
        .env("SQL_WATCHER_PASSWORD", "a long password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text.lines().last().unwrap().trim().to_string();
    assert_eq!(token.len(), 40, "{text}");
    let (status, list) = app.get(&token, "/detect/api/datasources/").await;
    assert_eq!(status, 200, "{list}");
    // The same name again is refused, and a short password too.
    let again = Command::new(binary())
        .args(["create-user", "--username", "cli-user"])
        .env("DATABASE_URL", &app.config.database_url)
        .env("SQL_WATCHER_PASSWORD", "a long password")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("taken"));
    app.stop().await;
}

const DUMP: &str = "
CREATE TABLE readings (id INTEGER PRIMARY KEY, ts TIMESTAMP NOT NULL, sensor VARCHAR(16) NOT NULL, value DOUBLE PRECISION NOT NULL);
INSERT INTO readings VALUES (1, '2026-11-01 00:00:00', 'a', 1.5), (2, '2026-11-01 00:01:00', 'b', 2.5);
INSERT INTO readings VALUES (3, '2026-11-01 00:02:00', 'a', 1.25);
";

const PG_DUMP: &str = "
--
-- PostgreSQL database dump
--
\\restrict abc123
SET statement_timeout = 0;
SET client_encoding = 'UTF8';
CREATE TABLE public.readings (id integer NOT NULL, ts timestamp without time zone NOT NULL, sensor text NOT NULL, value double precision NOT NULL);
COPY public.readings (id, ts, sensor, value) FROM stdin;
1\t2026-11-01 00:00:00\ta\t1.5
2\t2026-11-01 00:01:00\tb\t2.5
3\t2026-11-01 00:02:00\ta\t1.25
\\.
ALTER TABLE ONLY public.readings ADD CONSTRAINT readings_pkey PRIMARY KEY (id);
ALTER TABLE public.readings OWNER TO a_role_this_server_lacks;
GRANT INSERT, UPDATE, DELETE ON public.readings TO PUBLIC;
\\unrestrict abc123
";

/// Imports, then connects as the new account: it reads the rows, cannot write, and a registered source on it
/// works.
async fn import(engine: &str, admin_url: &str, dump: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.sql");
    std::fs::write(&path, dump).unwrap();
    let db = format!("sw_import_{}", std::process::id());
    let user = format!("sw_reader_{}", std::process::id());
    let run = |replace: bool| {
        let mut c = Command::new(binary());
        c.arg("import-dump").arg(&path).args([
            "--database",
            &db,
            "--user",
            &user,
            "--password",
            "read only p'w",
            "--admin-url",
            admin_url,
        ]);
        if replace {
            c.arg("--replace");
        }
        c.output().unwrap()
    };
    let first = run(true);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = run(false);
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing database is not overwritten silently"
    );
    let out = run(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let details: serde_json::Value =
        serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
    assert_eq!(details["engine"], engine);
    assert_eq!(details["name"], db.as_str());

    let scheme = if engine == "mysql" {
        "mysql"
    } else {
        "postgres"
    };
    let reader_url = format!(
        "{scheme}://{user}:read%20only%20p%27w@{}:{}/{db}",
        details["host"].as_str().unwrap(),
        details["port"]
    );
    let reader = Database::connect(&reader_url).await.unwrap();
    let n = reader
        .query_one(sea_orm::Statement::from_string(
            reader.get_database_backend(),
            "SELECT COUNT(*) AS n FROM readings".to_string(),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(n, 3);
    let write = reader
        .execute_unprepared("INSERT INTO readings (id, ts, sensor, value) VALUES (9, '2026-11-02 00:00:00', 'x', 0)")
        .await;
    assert!(write.is_err(), "the account must not write");
    // Not even with the session's read-only default turned off: the grants are the boundary.
    if engine == "postgres" {
        for sql in [
            "SET default_transaction_read_only = off; CREATE TABLE public.x (i int)",
            "SET default_transaction_read_only = off; CREATE TEMP TABLE t (i int)",
            "SET default_transaction_read_only = off; DELETE FROM readings",
        ] {
            assert!(reader.execute_unprepared(sql).await.is_err(), "{sql}");
        }
    } else {
        for sql in [
            "CREATE TABLE x (i int)",
            "DELETE FROM readings",
            "CREATE TEMPORARY TABLE t (i int)",
        ] {
            assert!(reader.execute_unprepared(sql).await.is_err(), "{sql}");
        }
    }

    let app = App::start(&[]).await;
    let token = app.user("importer").await;
    let body = json!({"alias": "imported", "engine": engine, "host": details["host"], "port": details["port"],
        "name": db, "user": user, "password": "read only p'w", "sql": "SELECT * FROM readings",
        "timestamp_column": "ts", "series_columns": ["sensor"]});
    let (status, src) = app.post(&token, "/detect/api/datasources/", &body).await;
    assert_eq!(status, 201, "{src}");
    let (_, run) = app
        .post(
            &token,
            &format!("/detect/api/datasources/{}/fetch/", src["id"]),
            &json!({}),
        )
        .await;
    assert_eq!(run["rows"], 3, "{run}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_dump_into_mariadb_with_a_read_only_account() {
    if let Some(url) = server("TEST_MYSQL_URL", "MariaDB import-dump test") {
        import("mysql", &url, DUMP).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_dump_into_postgres_with_a_read_only_account() {
    if let Some(url) = server("TEST_PG_URL", "PostgreSQL import-dump test") {
        import("postgres", &url, PG_DUMP).await;
    }
}
