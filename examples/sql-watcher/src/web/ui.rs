//! The web UI: server-rendered pages (askama templates, checked when the crate compiles), plain HTML forms with
//! CSRF tokens, no script. Landing page, registration and sign-in, the dashboard of the user's sources, the
//! source form, a source's rows with anomalies highlighted and explained, and the anomalies across sources.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::AppState;
use super::auth::{FORM_COOKIE, PageUser, SESSION_COOKIE, cookie, set_cookie};
use crate::WatcherError;
use crate::accounts;
use crate::db::{AnomalyFilter, StoredRow};
use crate::source::{Source, SourceSpec};
use crate::watcher::Trigger;

type St = State<Arc<AppState>>;
type Fields = Form<HashMap<String, String>>;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(landing))
        .route("/login", get(login_page).post(login))
        .route("/register", get(register_page).post(register))
        .route("/logout", post(logout))
        .route("/detect/", get(dashboard))
        .route("/detect/sources/new", get(new_source_page).post(new_source))
        .route("/detect/sources/{id}/", get(source_rows))
        .route(
            "/detect/sources/{id}/edit",
            get(edit_source_page).post(edit_source),
        )
        .route("/detect/sources/{id}/fetch", post(fetch_source))
        .route("/detect/sources/{id}/delete", post(delete_source))
        .route("/detect/anomalies/", get(anomalies))
        .route("/detect/tokens", post(new_token))
        .route("/detect/tokens/{id}/revoke", post(revoke_token))
        .route(
            "/static/app.css",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    include_str!("../../assets/app.css"),
                )
            }),
        )
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

fn failed(e: &WatcherError) -> Response {
    tracing::error!(error = %e, "a page failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html("<p>The application's database failed; try again.</p>"),
    )
        .into_response()
}

fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "—".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// Where to go after signing in: a path of this application only (`/` then a character that is not `/` or `\\`,
/// visible ASCII throughout, so that no browser reads it as another host).
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.clone()
        }
        _ => "/detect/".into(),
    }
}

/// Argon2 runs at most this many at once (each takes 19 MiB and tens of milliseconds): a flood of sign-ins
/// waits instead of exhausting memory.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(4))
}

/// The highest page number read (beyond it, offsets would leave the databases' integer range).
const MAX_PAGE: u64 = 1_000_000_000;

// ---- landing, sign-in, registration ----

#[derive(Template)]
#[template(path = "landing.html")]
struct Landing {
    user: Option<String>,
    registration: bool,
}

async fn landing(State(s): St, ext: axum::http::Extensions) -> Response {
    render(&Landing {
        user: super::auth::signed_in(&ext).map(|u| u.username),
        registration: s.watcher.config().allow_registration,
    })
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountForm {
    register: bool,
    registration: bool,
    csrf: String,
    next: String,
    username: String,
    error: Option<String>,
    user: Option<String>,
}

/// The form page with a fresh double-submit token in its cookie.
fn account_page(
    s: &AppState,
    register: bool,
    next: String,
    username: String,
    error: Option<String>,
) -> Response {
    let csrf = match accounts::random_hex(16) {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut r = render(&AccountForm {
        register,
        registration: s.watcher.config().allow_registration,
        csrf: csrf.clone(),
        next,
        username,
        error,
        user: None,
    });
    *r.status_mut() = status;
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(FORM_COOKIE, &csrf, None, s.watcher.config().secure_cookies),
    );
    r
}

async fn login_page(State(s): St, Query(q): Query<HashMap<String, String>>) -> Response {
    account_page(&s, false, safe_next(q.get("next")), String::new(), None)
}

async fn register_page(State(s): St) -> Response {
    if !s.watcher.config().allow_registration {
        return (
            StatusCode::FORBIDDEN,
            Html("<p>Registration is closed; ask an administrator.</p>"),
        )
            .into_response();
    }
    account_page(&s, true, "/detect/".into(), String::new(), None)
}

fn form_cookie_ok(headers: &HeaderMap, f: &HashMap<String, String>) -> bool {
    match (cookie(headers, FORM_COOKIE), f.get("csrfmiddlewaretoken")) {
        (Some(c), Some(sent)) => !c.is_empty() && accounts::same_secret(c, sent),
        _ => false,
    }
}

/// Signs `user` in: a new session, its cookie, and a redirect to `next`.
async fn start_session(s: &AppState, user_id: i64, next: &str) -> Response {
    let config = s.watcher.config();
    let (secret, csrf) = match (accounts::random_hex(32), accounts::random_hex(16)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return failed(&e),
    };
    let ttl = chrono::Duration::from_std(config.session_ttl).unwrap_or(chrono::Duration::days(14));
    if let Err(e) = s
        .watcher
        .db()
        .add_session(
            user_id,
            &accounts::digest(&secret),
            &csrf,
            Utc::now() + ttl,
            config.max_sessions_per_user,
        )
        .await
    {
        return failed(&e);
    }
    let mut r = Redirect::to(next).into_response();
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            &secret,
            Some(ttl.num_seconds()),
            config.secure_cookies,
        ),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(FORM_COOKIE, "", Some(0), config.secure_cookies),
    );
    r
}

async fn login(State(s): St, headers: HeaderMap, Form(f): Fields) -> Response {
    let next = safe_next(f.get("next"));
    let username = f.get("username").cloned().unwrap_or_default();
    if !form_cookie_ok(&headers, &f) {
        return account_page(
            &s,
            false,
            next,
            username,
            Some("The form expired; please try again.".into()),
        );
    }
    let password = f.get("password").cloned().unwrap_or_default();
    let found = match s.watcher.db().user_by_name(username.trim()).await {
        Ok(u) => u,
        Err(e) => return failed(&e),
    };
    // Verified on the blocking pool: Argon2 takes tens of milliseconds by design. An unknown user costs the
    // same as a wrong password.
    let hash = found.as_ref().map(|(_, h)| h.clone());
    let Ok(slot) = hashing_slots().acquire().await else {
        return failed(&WatcherError::Source("stopping".into()));
    };
    // The slot goes with the work: a client that hangs up does not free it while the hash still runs.
    let ok = tokio::task::spawn_blocking(move || match (slot, hash) {
        (_slot, Some(h)) => accounts::verify_password(&password, &h),
        (_slot, None) => {
            let _ = accounts::verify_password(&password, dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false);
    match (ok, found) {
        (true, Some((user, _))) => {
            tracing::info!(user = %user.username, "signed in");
            start_session(&s, user.id, &next).await
        }
        _ => account_page(
            &s,
            false,
            next,
            username,
            Some("Wrong user name or password.".into()),
        ),
    }
}

/// An Argon2id hash of a random password, so that an unknown user name takes as long as a known one.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        accounts::random_hex(16)
            .and_then(|p| accounts::hash_password(&p))
            .unwrap_or_default()
    })
}

async fn register(State(s): St, headers: HeaderMap, Form(f): Fields) -> Response {
    if !s.watcher.config().allow_registration {
        return (
            StatusCode::FORBIDDEN,
            Html("<p>Registration is closed; ask an administrator.</p>"),
        )
            .into_response();
    }
    let username = f
        .get("username")
        .map(|u| u.trim().to_string())
        .unwrap_or_default();
    let again =
        |why: String| account_page(&s, true, "/detect/".into(), username.clone(), Some(why));
    if !form_cookie_ok(&headers, &f) {
        return again("The form expired; please try again.".into());
    }
    let password = f.get("password").cloned().unwrap_or_default();
    if f.get("password2") != Some(&password) {
        return again("The two passwords differ.".into());
    }
    if let Err(e) = accounts::check_username(&username) {
        return again(e.to_string());
    }
    let Ok(slot) = hashing_slots().acquire().await else {
        return failed(&WatcherError::Source("stopping".into()));
    };
    let hashed = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        accounts::hash_password(&password)
    })
    .await;
    let hash = match hashed {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return again(e.to_string()),
        Err(e) => return again(e.to_string()),
    };
    match s.watcher.db().create_user(&username, &hash).await {
        Ok(user) => {
            tracing::info!(user = %user.username, "registered");
            start_session(&s, user.id, "/detect/").await
        }
        Err(e @ WatcherError::UsernameTaken(_)) => again(e.to_string()),
        Err(e) => failed(&e),
    }
}

async fn logout(State(s): St, user: PageUser, Form(f): Fields) -> Response {
    if !user.form_ok(f.get("csrfmiddlewaretoken")) {
        return forbidden();
    }
    if let Err(e) = s.watcher.db().delete_session(&user.digest).await {
        return failed(&e);
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            "",
            Some(0),
            s.watcher.config().secure_cookies,
        ),
    );
    r
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html("<p>The form's security token is missing or wrong; reload the page.</p>"),
    )
        .into_response()
}

// ---- dashboard ----

/// A source as the dashboard lists it.
struct SourceLine {
    id: i64,
    alias: String,
    engine: String,
    status: String,
    last_run: String,
    next_run: String,
    last_error: String,
    anomalies: u64,
    running: bool,
}

fn source_line(src: &Source, anomalies: u64, running: bool) -> SourceLine {
    SourceLine {
        id: src.id,
        alias: src.spec.alias.clone(),
        engine: src.spec.engine.as_str().into(),
        status: src.status.as_str().into(),
        last_run: fmt_time(src.last_run),
        next_run: fmt_time(Some(src.next_run_at)),
        last_error: src.last_error.clone().unwrap_or_default(),
        anomalies,
        running,
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    user: Option<String>,
    csrf: String,
    sources: Vec<SourceLine>,
    count: u64,
    new_token: Option<String>,
    /// The user's tokens: id, label, created.
    tokens: Vec<(i64, String, String)>,
}

async fn dashboard(State(s): St, user: PageUser) -> Response {
    dashboard_with(&s, &user, None).await
}

async fn dashboard_with(s: &AppState, user: &PageUser, new_token: Option<String>) -> Response {
    let db = s.watcher.db();
    let (count, sources) = match db.sources_of(user.user.id, 0, 1_000).await {
        Ok(x) => x,
        Err(e) => return failed(&e),
    };
    let ids: Vec<i64> = sources.iter().map(|s| s.id).collect();
    let counts = match db.anomaly_counts(&ids).await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let sources = sources
        .iter()
        .map(|src| {
            source_line(
                src,
                counts.get(&src.id).copied().unwrap_or(0),
                s.watcher.is_running(src.id),
            )
        })
        .collect();
    let tokens = match db.tokens(user.user.id).await {
        Ok(t) => t
            .into_iter()
            .map(|(id, label, at)| (id, label, fmt_time(Some(at))))
            .collect(),
        Err(e) => return failed(&e),
    };
    render(&Dashboard {
        user: Some(user.user.username.clone()),
        csrf: user.csrf.clone(),
        sources,
        count,
        new_token,
        tokens,
    })
}

async fn new_token(State(s): St, user: PageUser, Form(f): Fields) -> Response {
    if !user.form_ok(f.get("csrfmiddlewaretoken")) {
        return forbidden();
    }
    let token = match accounts::new_token() {
        Ok(t) => t,
        Err(e) => return failed(&e),
    };
    let config = s.watcher.config();
    if let Err(e) = s
        .watcher
        .db()
        .add_token(
            user.user.id,
            &accounts::digest(&token),
            "web",
            config.max_tokens_per_user,
        )
        .await
    {
        return failed(&e);
    }
    dashboard_with(&s, &user, Some(token)).await
}

async fn revoke_token(
    State(s): St,
    user: PageUser,
    Path(id): Path<i64>,
    Form(f): Fields,
) -> Response {
    if !user.form_ok(f.get("csrfmiddlewaretoken")) {
        return forbidden();
    }
    match s.watcher.db().delete_token(user.user.id, id).await {
        Ok(_) => Redirect::to("/detect/").into_response(),
        Err(e) => failed(&e),
    }
}

// ---- the source form ----

#[derive(Template)]
#[template(path = "source_form.html")]
struct SourceForm {
    user: Option<String>,
    csrf: String,
    /// `None` for a new source.
    id: Option<i64>,
    f: HashMap<String, String>,
    error: Option<String>,
}

impl SourceForm {
    fn value(&self, name: &str) -> String {
        self.f.get(name).cloned().unwrap_or_default()
    }

    fn selected(&self, name: &str, value: &str) -> bool {
        self.f.get(name).is_some_and(|v| v == value)
    }
}

fn spec_fields(spec: &SourceSpec) -> HashMap<String, String> {
    let mut f = HashMap::new();
    f.insert("alias".into(), spec.alias.clone());
    f.insert("engine".into(), spec.engine.as_str().into());
    f.insert("host".into(), spec.host.clone());
    f.insert(
        "port".into(),
        spec.port.map(|p| p.to_string()).unwrap_or_default(),
    );
    f.insert("name".into(), spec.name.clone());
    f.insert("user".into(), spec.user.clone());
    f.insert("sql".into(), spec.sql.clone());
    f.insert("timestamp_column".into(), spec.timestamp_column.clone());
    f.insert("series_columns".into(), spec.series_columns.join(", "));
    f.insert(
        "sensitivity".into(),
        match spec.sensitivity.to_json() {
            Value::String(s) => s,
            v => v.to_string(),
        },
    );
    f.insert(
        "fetch_interval_seconds".into(),
        spec.fetch_interval_seconds.to_string(),
    );
    f
}

async fn new_source_page(State(s): St, user: PageUser) -> Response {
    let mut f = HashMap::new();
    f.insert("engine".into(), "postgres".into());
    f.insert("sensitivity".into(), "auto".into());
    f.insert(
        "fetch_interval_seconds".into(),
        s.watcher.config().fetch_interval_seconds.to_string(),
    );
    render(&SourceForm {
        user: Some(user.user.username),
        csrf: user.csrf,
        id: None,
        f,
        error: None,
    })
}

/// The form's fields as the API's JSON (the password never echoed back into the page).
fn form_json(f: &HashMap<String, String>) -> Value {
    let mut obj = serde_json::Map::new();
    for (k, v) in f {
        if k != "csrfmiddlewaretoken" {
            obj.insert(k.clone(), Value::String(v.clone()));
        }
    }
    Value::Object(obj)
}

fn form_again(
    user: PageUser,
    id: Option<i64>,
    mut f: HashMap<String, String>,
    e: &WatcherError,
) -> Response {
    f.remove("password");
    f.remove("csrfmiddlewaretoken");
    let mut r = render(&SourceForm {
        user: Some(user.user.username),
        csrf: user.csrf,
        id,
        f,
        error: Some(e.to_string()),
    });
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

async fn new_source(State(s): St, user: PageUser, Form(f): Fields) -> Response {
    if !user.form_ok(f.get("csrfmiddlewaretoken")) {
        return forbidden();
    }
    match s.watcher.register(&user.user, &form_json(&f)).await {
        Ok(src) => Redirect::to(&format!("/detect/sources/{}/", src.id)).into_response(),
        Err(e @ (WatcherError::Invalid { .. } | WatcherError::UsernameTaken(_))) => {
            form_again(user, None, f, &e)
        }
        Err(e) => failed(&e),
    }
}

async fn owned(s: &AppState, user: &PageUser, id: i64) -> Result<Source, Response> {
    match s.watcher.db().user_source(user.user.id, id).await {
        Ok(Some(src)) => Ok(src),
        Ok(None) => {
            Err((StatusCode::NOT_FOUND, Html("<p>No such data source.</p>")).into_response())
        }
        Err(e) => Err(failed(&e)),
    }
}

async fn edit_source_page(State(s): St, user: PageUser, Path(id): Path<i64>) -> Response {
    let src = match owned(&s, &user, id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    render(&SourceForm {
        user: Some(user.user.username),
        csrf: user.csrf,
        id: Some(id),
        f: spec_fields(&src.spec),
        error: None,
    })
}

async fn edit_source(
    State(s): St,
    user: PageUser,
    Path(id): Path<i64>,
    Form(f): Fields,
) -> Response {
    if !user.form_ok(f.get("csrfmiddlewaretoken")) {
        return forbidden();
    }
    match s.watcher.update(&user.user, id, &form_json(&f)).await {
        Ok(Some(_)) => Redirect::to(&format!("/detect/sources/{id}/")).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, Html("<p>No such data source.</p>")).into_response(),
        Err(e @ WatcherError::Invalid { .. }) => form_again(user, Some(id), f, &e),
        Err(e) => failed(&e),
    }
}

async fn fetch_source(
    State(s): St,
    user: PageUser,
    Path(id): Path<i64>,
    Form(f): Fields,
) -> Response {
    if !user.form_ok(f.get("csrfmiddlewaretoken")) {
        return forbidden();
    }
    if let Err(r) = owned(&s, &user, id).await {
        return r;
    }
    match s.watcher.run_detached(id, Trigger::Request).await {
        Ok(_) | Err(WatcherError::Busy) => {
            Redirect::to(&format!("/detect/sources/{id}/")).into_response()
        }
        Err(e) => failed(&e),
    }
}

async fn delete_source(
    State(s): St,
    user: PageUser,
    Path(id): Path<i64>,
    Form(f): Fields,
) -> Response {
    if !user.form_ok(f.get("csrfmiddlewaretoken")) {
        return forbidden();
    }
    match s.watcher.delete(&user.user, id).await {
        Ok(_) => Redirect::to("/detect/").into_response(),
        Err(e) => failed(&e),
    }
}

// ---- rows and anomalies ----

/// A row as the tables show it.
struct RowLine {
    id: i64,
    source: String,
    source_id: i64,
    timestamp: String,
    series: String,
    score: String,
    anomaly: bool,
    rationale: String,
    row: String,
}

fn row_line(r: &StoredRow, source: String) -> RowLine {
    RowLine {
        id: r.id,
        source,
        source_id: r.datasource,
        timestamp: r.row_timestamp.clone(),
        series: r.series.clone(),
        score: r
            .score
            .map_or_else(|| "learning".into(), |s| format!("{s:.3}")),
        anomaly: r.is_anomaly,
        rationale: r
            .explanation
            .as_ref()
            .and_then(|e| e.get("rationale"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        row: r.row.to_string(),
    }
}

#[derive(Template)]
#[template(path = "rows.html")]
struct RowsPage {
    user: Option<String>,
    csrf: String,
    source: SourceLine,
    sql: String,
    rows: Vec<RowLine>,
    count: u64,
    page: u64,
    last: u64,
    only: bool,
}

async fn source_rows(
    State(s): St,
    user: PageUser,
    Path(id): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let src = match owned(&s, &user, id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let page = q
        .get("page")
        .and_then(|p| p.parse::<u64>().ok())
        .filter(|&p| p >= 1)
        .unwrap_or(1)
        .min(MAX_PAGE);
    let only = q.get("anomalies").is_some_and(|v| v == "1");
    const SIZE: u64 = 100;
    let db = s.watcher.db();
    let (count, rows) = match db
        .rows(id, only, (page - 1).saturating_mul(SIZE), SIZE)
        .await
    {
        Ok(x) => x,
        Err(e) => return failed(&e),
    };
    let anomalies = match db.anomaly_counts(&[id]).await {
        Ok(c) => c.get(&id).copied().unwrap_or(0),
        Err(e) => return failed(&e),
    };
    render(&RowsPage {
        user: Some(user.user.username),
        csrf: user.csrf,
        source: source_line(&src, anomalies, s.watcher.is_running(id)),
        sql: src.spec.sql.clone(),
        rows: rows
            .iter()
            .map(|r| row_line(r, src.spec.alias.clone()))
            .collect(),
        count,
        page,
        last: count.div_ceil(SIZE).max(1),
        only,
    })
}

#[derive(Template)]
#[template(path = "anomalies.html")]
struct AnomaliesPage {
    user: Option<String>,
    csrf: String,
    rows: Vec<RowLine>,
    count: u64,
    page: u64,
    last: u64,
}

async fn anomalies(
    State(s): St,
    user: PageUser,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    const SIZE: u64 = 100;
    let page = q
        .get("page")
        .and_then(|p| p.parse::<u64>().ok())
        .filter(|&p| p >= 1)
        .unwrap_or(1)
        .min(MAX_PAGE);
    let db = s.watcher.db();
    let (count, rows) = match db
        .anomalies(
            user.user.id,
            &AnomalyFilter::default(),
            (page - 1).saturating_mul(SIZE),
            SIZE,
        )
        .await
    {
        Ok(x) => x,
        Err(e) => return failed(&e),
    };
    let (_, sources) = match db.sources_of(user.user.id, 0, 10_000).await {
        Ok(x) => x,
        Err(e) => return failed(&e),
    };
    let alias: HashMap<i64, String> = sources.into_iter().map(|s| (s.id, s.spec.alias)).collect();
    render(&AnomaliesPage {
        user: Some(user.user.username),
        csrf: user.csrf,
        rows: rows
            .iter()
            .map(|r| row_line(r, alias.get(&r.datasource).cloned().unwrap_or_default()))
            .collect(),
        count,
        page,
        last: count.div_ceil(SIZE).max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn sign_in_goes_back_only_to_a_path_here() {
        for ok in ["/detect/", "/detect/sources/3/?page=2"] {
            assert_eq!(safe_next(Some(&ok.to_string())), ok);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "https://evil.example",
            "/a b",
            "/é",
        ] {
            assert_eq!(safe_next(Some(&bad.to_string())), "/detect/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/detect/");
    }
}
