//! The browser sign-in of [`Auth::with_sign_in`]: `GET /login` (a form for the token), `POST /login` (checks it,
//! sets the session cookie, goes back to the page asked for), `POST /logout` (clears the cookie).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::auth::{Auth, SESSION_SECONDS};

/// The sign-in page's path.
pub(crate) const LOGIN: &str = "/login";

/// Pause before answering a wrong token, so guessing costs time.
const WRONG_TOKEN_PAUSE: Duration = Duration::from_millis(250);

pub(crate) fn routes(auth: Arc<Auth>) -> Router {
    Router::new()
        .route(LOGIN, get(form).post(sign_in))
        .route("/logout", post(sign_out))
        .with_state(auth)
}

/// Whether a refused request is a browser asking for a page (a `GET` that accepts HTML), which is better sent to
/// the form than answered 401.
pub(crate) fn wants_page(request: &Request) -> bool {
    request.method() == axum::http::Method::GET
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

/// A redirection to the form, coming back to `uri` after.
pub(crate) fn to_login(uri: &Uri) -> Response {
    let next = uri.path_and_query().map_or("/", |p| p.as_str());
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    see_other(&format!("{LOGIN}?{query}"), None)
}

fn see_other(location: &str, cookie: Option<String>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = header::HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// Where to go after signing in: a path on this service only, else `/`. It must start with one `/` followed by
/// anything but `/` or `\`, and hold no whitespace, control character or backslash (browsers drop tabs and
/// newlines from URLs and read `\` as `/`, which would turn `/<tab>/host` into `//host`, another site).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !matches!(n.as_bytes().get(1), Some(b'/' | b'\\'))
                && !n
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '\\') =>
        {
            n
        }
        _ => "/",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(next: &str, message: Option<&str>) -> String {
    let message = message.map_or_else(String::new, |m| {
        format!("<p role=\"alert\">{}</p>", escape(m))
    });
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Sign in</title>\
         <style>body{{font:15px system-ui,sans-serif;max-width:24em;margin:10vh auto;padding:0 16px}}\
         input,button{{font:inherit;padding:6px;width:100%;box-sizing:border-box;margin:4px 0}}\
         [role=alert]{{color:#b91c1c}}</style></head><body><h1>Sign in</h1>{message}\
         <form method=\"post\" action=\"{LOGIN}\"><label>Token <input type=\"password\" name=\"token\" \
         autocomplete=\"current-password\" required autofocus></label>\
         <input type=\"hidden\" name=\"next\" value=\"{}\"><button type=\"submit\">Sign in</button></form>\
         </body></html>",
        escape(next)
    )
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

async fn form(Query(q): Query<Next>) -> Html<String> {
    Html(page(safe_next(q.next.as_deref()), None))
}

#[derive(Deserialize)]
struct Credentials {
    token: String,
    next: Option<String>,
}

/// Behind a proxy that terminates TLS and says so, the cookie is marked `Secure`.
fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

async fn sign_in(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Form(c): Form<Credentials>,
) -> Response {
    let next = safe_next(c.next.as_deref());
    let (Some(name), Some(value)) = (auth.session_cookie(), auth.sign_in(&c.token)) else {
        tracing::warn!("browser sign-in with a wrong token");
        tokio::time::sleep(WRONG_TOKEN_PAUSE).await;
        return (
            StatusCode::UNAUTHORIZED,
            Html(page(next, Some("Wrong token."))),
        )
            .into_response();
    };
    let secure = if behind_https(&headers) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}"
    );
    see_other(next, Some(cookie))
}

async fn sign_out(State(auth): State<Arc<Auth>>) -> Response {
    let name = auth.session_cookie().unwrap_or("session");
    see_other(
        LOGIN,
        Some(format!(
            "{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_signing_in() {
        assert_eq!(safe_next(Some("/ui?series=a")), "/ui?series=a");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "\\\\evil",
            "/\\evil",
            "ui",
            "/a\r\nSet-Cookie: x",
            "/\t/evil.example",
            "/ /evil.example",
            "/\u{2028}/evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_form_escapes_what_it_echoes() {
        let html = page("/ui?x=\"><script>", Some("<b>"));
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
    }
}
