//! Who is asking: `Authorization: Token <key>` (the original's scheme) or a browser's session cookie. The
//! middleware resolves the caller once per request; handlers take [`ApiUser`] (401 without credentials; a
//! session's unsafe request must carry its CSRF token in `X-CSRFToken`) or [`PageUser`] (a page: sent to
//! `/login` without a session). Forms carry the session's CSRF token in `csrfmiddlewaretoken`; the sign-in and
//! registration forms, before any session, a double-submitted cookie.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde_json::json;

use super::AppState;
use crate::accounts::{digest, same_secret};
use crate::db::User;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sqlwatcher_session";
/// The cookie of the sign-in and registration forms' CSRF token.
pub const FORM_COOKIE: &str = "sqlwatcher_csrf";

/// The caller, when known.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An API token's owner.
    Token(User),
    /// A signed-in browser.
    Session {
        /// Its user.
        user: User,
        /// The session's CSRF token.
        csrf: String,
        /// The cookie's digest (to sign out).
        digest: String,
    },
}

/// A cookie's value from the request's headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax (Strict for the form cookie), path `/`, `Secure` when asked.
pub fn set_cookie(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> HeaderValue {
    let same_site = if name == FORM_COOKIE { "Strict" } else { "Lax" };
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The caller the request's credentials name: `Ok(None)` without credentials; a token that matches nobody is a
/// 401 at once (a client with a wrong key is told so, rather than treated as anonymous).
async fn principal(state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Token ")
                .or_else(|| v.strip_prefix("Bearer "))
        })
        .map(|t| t.trim().to_string());
    if let Some(token) = token {
        return match state.watcher.db().user_by_token(&digest(&token)).await {
            Ok(Some(user)) => Ok(Some(Principal::Token(user))),
            Ok(None) => Err(unauthorized("Invalid token.")),
            Err(e) => Err(unavailable(&e)),
        };
    }
    let Some(secret) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let d = digest(secret);
    match state.watcher.db().session(&d, Utc::now()).await {
        Ok(Some((user, csrf))) => Ok(Some(Principal::Session {
            user,
            csrf,
            digest: d,
        })),
        Ok(None) => Ok(None),
        Err(e) => Err(unavailable(&e)),
    }
}

/// Resolves the caller and keeps it in the request's extensions.
pub async fn identify(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    match principal(&state, request.headers()).await {
        Ok(Some(p)) => {
            request.extensions_mut().insert(p);
        }
        Ok(None) => {}
        Err(r) => return r,
    }
    next.run(request).await
}

/// `/metrics` (added by the service kit) for any user's token or session only.
pub async fn metrics_guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() != "/metrics" {
        return next.run(request).await;
    }
    match principal(&state, request.headers()).await {
        Ok(Some(_)) => next.run(request).await,
        Ok(None) => unauthorized("Authentication credentials were not provided."),
        Err(r) => r,
    }
}

fn unavailable(e: &crate::WatcherError) -> Response {
    tracing::warn!(error = %e, "cannot check credentials");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"detail": "the application's database does not answer; try again"})),
    )
        .into_response()
}

fn unauthorized(detail: &str) -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, Json(json!({"detail": detail}))).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
    r
}

/// An API caller: a token's owner, or a session (whose unsafe requests carry `X-CSRFToken`).
#[derive(Debug, Clone)]
pub struct ApiUser(pub User);

impl<S: Send + Sync> FromRequestParts<S> for ApiUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        match parts.extensions.get::<Principal>() {
            None => Err(unauthorized(
                "Authentication credentials were not provided.",
            )),
            Some(Principal::Token(user)) => Ok(ApiUser(user.clone())),
            Some(Principal::Session { user, csrf, .. }) => {
                let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
                let sent = parts
                    .headers
                    .get("x-csrftoken")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if safe || same_secret(sent, csrf) {
                    Ok(ApiUser(user.clone()))
                } else {
                    Err((
                        StatusCode::FORBIDDEN,
                        Json(json!({"detail": "CSRF Failed: CSRF token missing or incorrect."})),
                    )
                        .into_response())
                }
            }
        }
    }
}

/// A signed-in browser, for pages and forms.
#[derive(Debug, Clone)]
pub struct PageUser {
    /// Its user.
    pub user: User,
    /// The session's CSRF token, for the page's forms.
    pub csrf: String,
    /// The session cookie's digest.
    pub digest: String,
}

impl PageUser {
    /// Whether a form's `csrfmiddlewaretoken` is this session's.
    pub fn form_ok(&self, sent: Option<&String>) -> bool {
        sent.is_some_and(|s| same_secret(s, &self.csrf))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        match parts.extensions.get::<Principal>() {
            Some(Principal::Session { user, csrf, digest }) => Ok(PageUser {
                user: user.clone(),
                csrf: csrf.clone(),
                digest: digest.clone(),
            }),
            _ => {
                let next = parts.uri.path();
                let to = if next.starts_with('/') && !next.starts_with("//") {
                    format!("/login?next={}", super::encode(next))
                } else {
                    "/login".into()
                };
                Err(Redirect::to(&to).into_response())
            }
        }
    }
}

/// Whether a principal is signed in (for the landing page's links).
pub fn signed_in(parts: &axum::http::Extensions) -> Option<User> {
    match parts.get::<Principal>() {
        Some(Principal::Session { user, .. }) => Some(user.clone()),
        _ => None,
    }
}
