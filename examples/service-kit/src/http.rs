//! The layers every service's router gets, and the small responses they share.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::timeout::TimeoutLayer;

use crate::auth::Auth;
use crate::settings::ServeSettings;
use crate::telemetry::{RequestLabels, Telemetry};

/// Routes that answer without authentication: probes must work before anyone has a token.
const OPEN_ROUTES: [&str; 2] = ["/health", "/ready"];

/// A JSON error body `{"error": message}` with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// The answer of `/ready`: 200 `{"status": "ready"}`, or 503 `{"status": "not ready", "reason": …}`.
pub fn ready_response(readiness: Result<(), String>) -> Response {
    match readiness {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": reason})),
        )
            .into_response(),
    }
}

/// `routes` with what every service needs, from the outside in:
/// 1. the request-latency histogram in `telemetry` (every answer counted, refusals and timeouts included);
/// 2. a timeout of `REQUEST_TIMEOUT_SECONDS` over the whole request, body read included (408);
/// 3. `auth`, when given, on every route but `/health` and `/ready` (401 with how to send the token; with
///    [`Auth::with_sign_in`], `/login` too, and a page request is sent there); without
///    one (a loopback `HOST`), a `Host` header other than `localhost`, `127.0.0.1` or `[::1]` is refused (403), so a
///    web page cannot reach the service through DNS rebinding;
/// 4. the body limit `MAX_REQUEST_BYTES` for extractors (413);
///
/// and `GET /metrics` (authenticated like the rest) rendering `telemetry`.
pub fn app(
    routes: Router,
    settings: &ServeSettings,
    auth: Option<Auth>,
    telemetry: Arc<Telemetry>,
) -> Router {
    let metrics = {
        let telemetry = telemetry.clone();
        get(move |request: Request| async move {
            let accept = request
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let (content_type, body) = telemetry.render(&accept);
            ([(header::CONTENT_TYPE, content_type)], body)
        })
    };
    let mut router = routes
        .route("/metrics", metrics)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes));
    if let Some(auth) = auth {
        let auth = Arc::new(auth);
        if auth.session_cookie().is_some() {
            router = router.merge(crate::sign_in::routes(auth.clone()));
        }
        router = router.layer(middleware::from_fn_with_state(auth, authenticate));
    } else if settings.host.is_loopback() {
        router = router.layer(middleware::from_fn(loopback_host_only));
    }
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(telemetry, observe))
}

async fn authenticate(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let sign_in = auth.session_cookie().is_some();
    if OPEN_ROUTES.contains(&path)
        || (sign_in && path == crate::sign_in::LOGIN)
        || auth.admits(request.headers())
    {
        return next.run(request).await;
    }
    if sign_in && crate::sign_in::wants_page(&request) {
        return crate::sign_in::to_login(request.uri());
    }
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        format!("missing or wrong credentials: {}", auth.how()),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Whether a `Host` header names this machine's loopback (with any port).
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8080
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        })
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn loopback_host_only(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if is_loopback_host(host) {
        return next.run(request).await;
    }
    error_response(
        StatusCode::FORBIDDEN,
        format!(
            "this service answers only requests addressed to localhost (Host `{host}`); to serve other names, \
             listen beyond loopback with a token"
        ),
    )
}

async fn observe(
    State(telemetry): State<Arc<Telemetry>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // A client can send any method name: only the standard ones become label values, so series stay bounded.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    telemetry.observe(
        RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        },
        started.elapsed(),
    );
    response
}

/// Middleware for routes that take a JSON body: a `POST`, `PUT` or `PATCH` whose `Content-Type` is not `application/json` (or
/// `application/<something>+json`) gets a 415 before its body is read. This also keeps a web page a user visits
/// from posting to the service: a cross-site `fetch` with a JSON content type needs a CORS preflight, which the
/// services do not grant. Use with [`axum::middleware::from_fn`] on the JSON routes.
pub async fn require_json(request: Request, next: Next) -> Response {
    use axum::http::Method;
    // Only methods that carry a body: a GET sharing the route passes.
    if ![Method::POST, Method::PUT, Method::PATCH].contains(request.method()) {
        return next.run(request).await;
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        next.run(request).await
    } else {
        error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the body must be JSON sent with `Content-Type: application/json` (got {})",
                if content_type.is_empty() {
                    "no content type".to_string()
                } else {
                    format!("`{content_type}`")
                }
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8787",
            "127.1.2.3:9",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1",
            "[::2]:80",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
