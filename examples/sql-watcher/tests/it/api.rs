//! The REST API on every engine: register, fetch, planted anomalies on top, the watermark, the read-only
//! guard, one user's sources hidden from another, pagination shapes, credentials.

use reqwest::Method;
use serde_json::{Value, json};

use crate::table::{PLANTED, ROWS, Watched};
use crate::{App, server, unique};

/// The whole flow on one watched database, the application's own database on SQLite or at `app_db`.
async fn flow(engine: &'static str, url: Option<&str>, app_db: Option<&str>) {
    let app = match app_db {
        None => App::start(&[]).await,
        Some(db) => App::start(&[("DATABASE_URL", db)]).await,
    };
    let token = app.user(&unique("ana")).await;
    let w = Watched::create(engine, url, "sw_flow").await;

    let (status, src) = app
        .post(&token, "/detect/api/datasources/", &w.source("metrics"))
        .await;
    assert_eq!(status, 201, "{src}");
    assert!(
        src.get("password").is_none(),
        "the password is never answered: {src}"
    );
    assert_eq!(src["status"], "pending");
    assert_eq!(src["series_columns"], json!(["host"]));
    let id = src["id"].as_i64().unwrap();

    let (status, run) = app
        .post(
            &token,
            &format!("/detect/api/datasources/{id}/fetch/"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(run["rows"], ROWS, "{run}");

    // The planted rows are the most anomalous of all.
    let (status, page) = app.get(&token, "/detect/api/anomalies/?page_size=3").await;
    assert_eq!(status, 200, "{page}");
    let top: Vec<u64> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"]["id"].as_u64().unwrap())
        .collect();
    let mut sorted = top.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        PLANTED.to_vec(),
        "{engine}: top anomalies {top:?}, {page}"
    );
    let first = &page["results"][0];
    for field in [
        "id",
        "datasource",
        "row",
        "row_timestamp",
        "series",
        "score",
        "is_anomaly",
        "explanation",
    ] {
        assert!(first.get(field).is_some(), "{field} missing from {first}");
    }
    assert_eq!(first["datasource"], id);
    assert_eq!(first["is_anomaly"], true);
    let why = first["explanation"]["rationale"].as_str().unwrap();
    assert!(why.contains("cpu") || why.contains("latency"), "{why}");
    assert!(
        page["count"].as_u64().unwrap() < ROWS / 20,
        "too many flagged: {page}"
    );

    // New rows are fetched once.
    w.insert(ROWS..ROWS + 60).await;
    let (_, run) = app
        .post(
            &token,
            &format!("/detect/api/datasources/{id}/fetch/"),
            &json!({}),
        )
        .await;
    assert_eq!(run["rows"], 60, "{run}");
    let (_, run) = app
        .post(
            &token,
            &format!("/detect/api/datasources/{id}/fetch/"),
            &json!({}),
        )
        .await;
    assert_eq!(run["rows"], 0, "{run}");
    let (_, rows) = app
        .get(
            &token,
            &format!("/detect/api/datasources/{id}/rows/?page_size=5"),
        )
        .await;
    assert_eq!(rows["count"], ROWS + 60, "{rows}");
    let newest = &rows["results"][0];
    assert_eq!(newest["row"]["id"], ROWS + 59, "newest first: {newest}");
    assert!(newest["score"].as_f64().is_some(), "scored: {newest}");

    let (_, view) = app
        .get(&token, &format!("/detect/api/datasources/{id}/"))
        .await;
    assert_eq!(view["status"], "ok", "{view}");
    assert!(view["last_run"].is_string(), "{view}");
    assert!(view["anomaly_count"].as_u64().unwrap() >= 3, "{view}");
    let (_, runs) = app
        .get(&token, &format!("/detect/api/datasources/{id}/runs/"))
        .await;
    assert_eq!(runs.as_array().unwrap().len(), 3, "{runs}");

    // A change of sensitivity keeps the rows; a change of query starts over.
    let (status, changed) = app
        .call(
            Method::PATCH,
            &token,
            &format!("/detect/api/datasources/{id}/"),
            Some(&json!({"sensitivity": "auto"})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["sensitivity"], "auto");
    assert_eq!(changed["anomaly_count"], view["anomaly_count"]);
    let narrower = format!("SELECT id, ts, host, cpu FROM {}", w.table);
    let (status, changed) = app
        .call(
            Method::PUT,
            &token,
            &format!("/detect/api/datasources/{id}/"),
            Some(&json!({"sql": narrower})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["status"], "pending", "{changed}");
    assert_eq!(changed["watermark"], Value::Null, "{changed}");
    let (_, rows) = app
        .get(&token, &format!("/detect/api/datasources/{id}/rows/"))
        .await;
    assert_eq!(rows["count"], 0, "the old query's rows are gone: {rows}");
    let (_, run) = app
        .post(
            &token,
            &format!("/detect/api/datasources/{id}/fetch/"),
            &json!({}),
        )
        .await;
    assert_eq!(run["rows"], ROWS + 60, "read again from the start: {run}");
    let (_, rows) = app
        .get(
            &token,
            &format!("/detect/api/datasources/{id}/rows/?page_size=1"),
        )
        .await;
    assert_eq!(
        rows["results"][0]["row"].as_object().unwrap().len(),
        4,
        "{rows}"
    );

    let (status, _) = app
        .call(
            Method::DELETE,
            &token,
            &format!("/detect/api/datasources/{id}/"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .get(&token, &format!("/detect/api/datasources/{id}/"))
        .await;
    assert_eq!(status, 404);
    w.drop_table().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_source_end_to_end() {
    flow("sqlite", None, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_own_database_on_postgres_and_mariadb() {
    for (var, what) in [("TEST_PG_URL", "PostgreSQL"), ("TEST_MYSQL_URL", "MariaDB")] {
        if let Some(url) = server(var, &format!("the application on {what}")) {
            flow("sqlite", None, Some(&url)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_source_end_to_end() {
    if let Some(url) = server("TEST_MYSQL_URL", "MariaDB source test") {
        flow("mysql", Some(&url), None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_source_end_to_end() {
    if let Some(url) = server("TEST_PG_URL", "PostgreSQL source test") {
        flow("postgres", Some(&url), None).await;
    }
}

/// Queries that write, sleep or chain statements are refused with the reason, and the table is untouched.
async fn guard(engine: &'static str, url: Option<&str>) {
    let app = App::start(&[]).await;
    let token = app.user("guard").await;
    let w = Watched::create(engine, url, "sw_guard").await;
    let t = &w.table;
    let sleep = match engine {
        "postgres" => format!("SELECT id, ts, host, pg_sleep(30) FROM {t}"),
        "mysql" => format!("SELECT id, ts, host, SLEEP(30) FROM {t}"),
        // SQLite has no sleep: a statement that would change the file instead.
        _ => "PRAGMA writable_schema = 1".to_string(),
    };
    let hostile = [
        format!("DELETE FROM {t}"),
        format!("UPDATE {t} SET cpu = 0"),
        format!("SELECT id, ts, host FROM {t}; DROP TABLE {t}"),
        format!("INSERT INTO {t} (id) VALUES (-1)"),
        format!("DROP TABLE {t}"),
        sleep,
        format!("WITH gone AS (DELETE FROM {t} RETURNING *) SELECT * FROM gone"),
    ];
    for (i, sql) in hostile.iter().enumerate() {
        let mut body = w.source(&format!("bad-{i}"));
        body["sql"] = json!(sql);
        let (status, answer) = app.post(&token, "/detect/api/datasources/", &body).await;
        // The guard refuses by syntax; a query it would let through must still fail in the read-only
        // transaction, never run.
        assert_eq!(status, 400, "{engine}: {sql} → {answer}");
        assert!(answer["sql"][0].is_string(), "{engine}: {sql} → {answer}");
    }
    // A missing column and an unreachable server name the field.
    let mut body = w.source("no-column");
    body["timestamp_column"] = json!("nope");
    let (status, answer) = app.post(&token, "/detect/api/datasources/", &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["timestamp_column"][0].is_string(), "{answer}");
    assert_eq!(w.count().await, ROWS as i64, "{engine}: the table changed");
    let (_, list) = app.get(&token, "/detect/api/datasources/").await;
    assert_eq!(list["count"], 0, "{list}");
    w.drop_table().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_guard() {
    guard("sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_guard() {
    if let Some(url) = server("TEST_MYSQL_URL", "MariaDB guard test") {
        guard("mysql", Some(&url)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_guard() {
    if let Some(url) = server("TEST_PG_URL", "PostgreSQL guard test") {
        guard("postgres", Some(&url)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_never_sees_anothers_sources_and_pages_have_the_frameworks_shape() {
    let app = App::start(&[]).await;
    let ana = app.user("ana").await;
    let bo = app.user("bo").await;
    let w = Watched::create("sqlite", None, "sw_users").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, s) = app
            .post(
                &ana,
                "/detect/api/datasources/",
                &w.source(&format!("s{i}")),
            )
            .await;
        assert_eq!(status, 201, "{s}");
        ids.push(s["id"].as_i64().unwrap());
    }
    let (status, dup) = app
        .post(&ana, "/detect/api/datasources/", &w.source("s0"))
        .await;
    assert_eq!(status, 400, "{dup}");
    assert!(dup["alias"][0].is_string(), "{dup}");
    let (_, run) = app
        .post(
            &ana,
            &format!("/detect/api/datasources/{}/fetch/", ids[0]),
            &json!({}),
        )
        .await;
    assert_eq!(run["status"], "ok", "{run}");

    // Pagination as the original's framework answers it.
    let (status, p1) = app.get(&ana, "/detect/api/datasources/?page_size=2").await;
    assert_eq!(status, 200);
    assert_eq!(p1["count"], 5);
    assert_eq!(p1["previous"], Value::Null);
    assert_eq!(p1["results"].as_array().unwrap().len(), 2);
    let next = p1["next"].as_str().unwrap();
    assert!(
        next.starts_with("http://")
            && next.ends_with("/detect/api/datasources/?page_size=2&page=2"),
        "{next}"
    );
    let (_, p3) = app
        .get(&ana, "/detect/api/datasources/?page_size=2&page=3")
        .await;
    assert_eq!(p3["results"].as_array().unwrap().len(), 1);
    assert_eq!(p3["next"], Value::Null);
    assert!(p3["previous"].as_str().unwrap().ends_with("page=2"), "{p3}");
    let (status, gone) = app
        .get(&ana, "/detect/api/datasources/?page_size=2&page=4")
        .await;
    assert_eq!((status, gone), (404, json!({"detail": "Invalid page."})));
    for bad in [
        "zero",
        "0",
        "-1",
        "99999999999999999999",
        "1000000001",
        "last",
    ] {
        let (status, _) = app
            .get(&ana, &format!("/detect/api/datasources/?page={bad}"))
            .await;
        assert_eq!(status, 404, "page={bad}");
    }
    let (status, _) = app
        .get(
            &ana,
            "/detect/api/anomalies/?page=1000000000&page_size=1000",
        )
        .await;
    assert_eq!(status, 404);

    // Bo sees nothing of Ana's and can change nothing.
    let (_, list) = app.get(&bo, "/detect/api/datasources/").await;
    assert_eq!(list["count"], 0, "{list}");
    let (_, anomalies) = app.get(&bo, "/detect/api/anomalies/").await;
    assert_eq!(anomalies["count"], 0, "{anomalies}");
    let (_, filtered) = app
        .get(
            &bo,
            &format!("/detect/api/anomalies/?datasource={}", ids[0]),
        )
        .await;
    assert_eq!(filtered["count"], 0, "{filtered}");
    for (method, path) in [
        (Method::GET, format!("/detect/api/datasources/{}/", ids[0])),
        (
            Method::GET,
            format!("/detect/api/datasources/{}/rows/", ids[0]),
        ),
        (
            Method::POST,
            format!("/detect/api/datasources/{}/fetch/", ids[0]),
        ),
        (
            Method::DELETE,
            format!("/detect/api/datasources/{}/", ids[0]),
        ),
    ] {
        let (status, _) = app.call(method.clone(), &bo, &path, Some(&json!({}))).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (status, _) = app
        .call(
            Method::PUT,
            &bo,
            &format!("/detect/api/datasources/{}/", ids[0]),
            Some(&json!({"alias": "mine"})),
        )
        .await;
    assert_eq!(status, 404);
    let (_, still) = app
        .get(&ana, &format!("/detect/api/datasources/{}/", ids[0]))
        .await;
    assert_eq!(still["alias"], "s0");

    // Ana's anomalies, filtered.
    let (_, all) = app.get(&ana, "/detect/api/anomalies/").await;
    assert!(all["count"].as_u64().unwrap() >= 3, "{all}");
    let (_, none) = app
        .get(
            &ana,
            &format!("/detect/api/anomalies/?datasource={}", ids[1]),
        )
        .await;
    assert_eq!(none["count"], 0);
    let (_, later) = app
        .get(&ana, "/detect/api/anomalies/?since=2100-01-01")
        .await;
    assert_eq!(later["count"], 0);
    let (_, until) = app
        .get(&ana, "/detect/api/anomalies/?until=2100-01-01T00:00:00Z")
        .await;
    assert_eq!(until["count"], all["count"]);
    let (status, bad) = app
        .get(&ana, "/detect/api/anomalies/?since=yesterday")
        .await;
    assert_eq!(status, 400, "{bad}");

    // Tokens are listed and revoked.
    let (status, made) = app.post(&bo, "/detect/api/tokens/", &json!({})).await;
    assert_eq!(status, 201, "{made}");
    let fresh = made["token"].as_str().unwrap().to_string();
    let (_, list) = app.get(&fresh, "/detect/api/tokens/").await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let newest = list[0]["id"].as_i64().unwrap();
    let (status, _) = app
        .call(
            Method::DELETE,
            &ana,
            &format!("/detect/api/tokens/{newest}/"),
            None,
        )
        .await;
    assert_eq!(status, 404, "not Ana's token");
    let (status, _) = app
        .call(
            Method::DELETE,
            &bo,
            &format!("/detect/api/tokens/{newest}/"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = app.get(&fresh, "/detect/api/tokens/").await;
    assert_eq!(status, 401, "a revoked token is refused");

    // Credentials.
    let r = app
        .client
        .get(format!("{}/detect/api/datasources/", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Token");
    let (status, _) = app
        .get(
            "0000000000000000000000000000000000000000",
            "/detect/api/datasources/",
        )
        .await;
    assert_eq!(status, 401);
    let r = app
        .client
        .post(format!("{}/detect/api/datasources/", app.url))
        .header("authorization", format!("Token {ana}"))
        .body("alias=x")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "metrics need a user's token");
    let r = app
        .client
        .get(format!("{}/metrics", app.url))
        .header("authorization", format!("Token {ana}"))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("sql_watcher_runs_total"), "{text}");
    match service_kit::testing::promtool_check(&text) {
        Ok(true) => {}
        Ok(false) => eprintln!("SKIPPED promtool check: promtool is not installed"),
        Err(e) => panic!("promtool: {e}\n{text}"),
    }
    w.drop_table().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_fetches_due_sources_by_itself() {
    let app = App::start(&[
        ("SCHEDULER", "true"),
        ("MIN_FETCH_INTERVAL_SECONDS", "1"),
        ("FETCH_INTERVAL_SECONDS", "1"),
    ])
    .await;
    let token = app.user("sched").await;
    let w = Watched::create("sqlite", None, "sw_sched").await;
    let mut body = w.source("auto");
    body["fetch_interval_seconds"] = json!(1);
    let (_, src) = app.post(&token, "/detect/api/datasources/", &body).await;
    let id = src["id"].as_i64().unwrap();
    let mut fetched = 0;
    for _ in 0..200 {
        let (_, rows) = app
            .get(
                &token,
                &format!("/detect/api/datasources/{id}/rows/?page_size=1"),
            )
            .await;
        fetched = rows["count"].as_u64().unwrap_or(0);
        if fetched == ROWS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(fetched, ROWS);
    w.insert(ROWS..ROWS + 30).await;
    for _ in 0..200 {
        let (_, rows) = app
            .get(
                &token,
                &format!("/detect/api/datasources/{id}/rows/?page_size=1"),
            )
            .await;
        fetched = rows["count"].as_u64().unwrap_or(0);
        if fetched == ROWS + 30 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(fetched, ROWS + 30, "new rows fetched once by the schedule");
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let (_, rows) = app
        .get(
            &token,
            &format!("/detect/api/datasources/{id}/rows/?page_size=1"),
        )
        .await;
    assert_eq!(rows["count"], ROWS + 30, "and never again");
    let (_, runs) = app
        .get(&token, &format!("/detect/api/datasources/{id}/runs/"))
        .await;
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .all(|r| r["trigger"] == "schedule"),
        "{runs}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_source_must_be_a_file_under_the_allowed_directory() {
    let w = Watched::create("sqlite", None, "sw_place").await;
    let closed = App::start(&[("SQLITE_SOURCE_DIR", "")]).await;
    let token = closed.user("place").await;
    let (status, answer) = closed
        .post(&token, "/detect/api/datasources/", &w.source("off"))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["name"][0]
            .as_str()
            .unwrap()
            .contains("SQLITE_SOURCE_DIR"),
        "{answer}"
    );
    let own = closed
        .config
        .database_url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    closed.stop().await;

    let dir = std::path::Path::new(w.fields["name"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let app = App::start(&[("SQLITE_SOURCE_DIR", dir.to_str().unwrap())]).await;
    let token = app.user("place").await;
    let (status, ok) = app
        .post(&token, "/detect/api/datasources/", &w.source("inside"))
        .await;
    assert_eq!(status, 201, "{ok}");
    // The place is checked again at every run: here by the same database served with SQLite sources off.
    let id = ok["id"].as_i64().unwrap();
    let off = App::start(&[
        ("SQLITE_SOURCE_DIR", ""),
        ("DATABASE_URL", &app.config.database_url),
    ])
    .await;
    let (status, run) = off
        .post(
            &token,
            &format!("/detect/api/datasources/{id}/fetch/"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "error", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("SQLITE_SOURCE_DIR"),
        "{run}"
    );
    off.stop().await;
    let app_own = app
        .config
        .database_url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    for name in [
        own,
        app_own,
        "../../etc/passwd".into(),
        format!("{}/../x.db", dir.display()),
        "/etc/hostname".into(),
        format!("{}/watched%2edb", dir.display()),
    ] {
        let mut body = w.source("outside");
        body["name"] = json!(name);
        let (status, answer) = app.post(&token, "/detect/api/datasources/", &body).await;
        assert_eq!(status, 400, "{name}: {answer}");
        assert!(answer["name"][0].is_string(), "{name}: {answer}");
    }
    app.stop().await;

    // Under the allowed directory, the application's own database is still refused.
    let open = App::start(&[]).await;
    let token = open.user("place").await;
    let mut body = w.source("own");
    let own = open
        .config
        .database_url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    body["name"] = json!(own);
    let (status, answer) = open.post(&token, "/detect/api/datasources/", &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["name"][0].as_str().unwrap().contains("own database"),
        "{answer}"
    );
    open.stop().await;
}
