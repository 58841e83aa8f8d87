//! [`Auth`]: the service's token, checked on every route but `/health` and `/ready`; for a service with a web
//! page, also a browser sign-in that turns the token into a session cookie.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// A shared secret a request must carry: always accepted as `Authorization: Bearer <token>`, and also in a
/// service's own header when it has one (the GraphQL plugin's `hasura-m-auth`). Only a digest is kept, and
/// digests are compared in constant time: neither the content nor the length of the token leaks through timing.
#[derive(Clone)]
pub struct Auth {
    digest: [u8; 32],
    header: Option<String>,
    session: Option<Session>,
}

/// The browser sign-in: a cookie whose value is derived from the token (so the token itself is never stored in the
/// browser), compared by digest like the token.
#[derive(Clone)]
struct Session {
    cookie: String,
    value: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// A token sent as `Authorization: Bearer <token>`.
    pub fn bearer(token: impl AsRef<[u8]>) -> Self {
        Auth {
            digest: Sha256::digest(token.as_ref()).into(),
            header: None,
            session: None,
        }
    }

    /// Also signs browsers in: `GET /login` shows a form for the token, `POST /login` checks it and sets the
    /// cookie `cookie` (`HttpOnly`, `SameSite=Strict`, `Secure` behind an HTTPS proxy that says so in
    /// `X-Forwarded-Proto`, a week long), which then admits requests like the token; a page request without
    /// credentials is sent to the form. For services with a web page; `SameSite=Strict` keeps other sites'
    /// pages from using the cookie.
    pub fn with_sign_in(mut self, cookie: impl Into<String>) -> Self {
        let mut derived = Sha256::new();
        derived.update(b"service-kit browser session v1\0");
        derived.update(self.digest);
        let value: String = derived
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.session = Some(Session {
            cookie: cookie.into(),
            digest: Sha256::digest(value.as_bytes()).into(),
            value,
        });
        self
    }

    /// The session cookie's name, when browsers can sign in.
    pub(crate) fn session_cookie(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.cookie.as_str())
    }

    /// The session cookie's value for a browser that gave `token`, when it is the right one.
    pub(crate) fn sign_in(&self, token: &str) -> Option<&str> {
        let session = self.session.as_ref()?;
        Self::same(&self.digest, token.trim().as_bytes()).then_some(session.value.as_str())
    }

    /// A token sent in `header` (its whole value), or as a bearer token.
    pub fn header(header: impl Into<String>, token: impl AsRef<[u8]>) -> Self {
        Auth {
            header: Some(header.into().to_ascii_lowercase()),
            ..Auth::bearer(token)
        }
    }

    /// How a client sends the token, for error messages.
    pub fn how(&self) -> String {
        match &self.header {
            Some(h) => format!("send the token in `{h}` or as `Authorization: Bearer <token>`"),
            None => "send the token as `Authorization: Bearer <token>`".into(),
        }
    }

    /// Whether `headers` carry the token.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let own = self
            .header
            .as_deref()
            .and_then(|h| headers.get(h))
            .map(|v| v.as_bytes());
        // Both are checked whatever the first gives, so the time taken does not tell which one was sent.
        let a = bearer.is_some_and(|t| Self::same(&self.digest, t.as_bytes()));
        let b = own.is_some_and(|t| Self::same(&self.digest, t));
        let c = self.session.as_ref().is_some_and(|s| {
            cookie(headers, &s.cookie).is_some_and(|v| Self::same(&s.digest, v.as_bytes()))
        });
        a | b | c
    }

    /// Whether `given` hashes to `digest`, compared in constant time.
    fn same(digest: &[u8; 32], given: &[u8]) -> bool {
        let given = Sha256::digest(given);
        given
            .iter()
            .zip(digest.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

/// The value of the cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.trim())
        })
}

#[cfg(test)]
mod tests {
    use super::Auth;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tokens_compare_whole() {
        let auth = Auth::header("hasura-m-auth", "s3cret");
        assert!(auth.admits(&headers(&[("hasura-m-auth", "s3cret")])));
        assert!(auth.admits(&headers(&[("authorization", "Bearer s3cret")])));
        assert!(auth.admits(&headers(&[("authorization", "bearer  s3cret ")])));
        for wrong in ["s3cre", "", "s3cret!", "S3CRET"] {
            assert!(
                !auth.admits(&headers(&[("hasura-m-auth", wrong)])),
                "{wrong}"
            );
            assert!(!auth.admits(&headers(&[("authorization", &format!("Bearer {wrong}"))])));
        }
        assert!(!auth.admits(&headers(&[("authorization", "Basic s3cret")])));
        assert!(!auth.admits(&HeaderMap::new()));
        let bearer_only = Auth::bearer("t");
        assert!(!bearer_only.admits(&headers(&[("hasura-m-auth", "t")])));
    }

    #[test]
    fn a_signed_in_browser_is_admitted_by_its_cookie_alone() {
        let auth = Auth::bearer("s3cret").with_sign_in("worker_session");
        assert_eq!(auth.sign_in("wrong"), None);
        let value = auth.sign_in(" s3cret ").unwrap().to_string();
        assert!(
            !value.contains("s3cret") && value.len() == 64,
            "derived, not the token"
        );
        assert!(auth.admits(&headers(&[(
            "cookie",
            &format!("a=b; worker_session={value}")
        )])));
        assert!(!auth.admits(&headers(&[("cookie", "worker_session=s3cret")])));
        assert!(!auth.admits(&headers(&[("cookie", &format!("other={value}"))])));
        // Without sign-in, no cookie admits.
        assert!(
            !Auth::bearer("s3cret")
                .admits(&headers(&[("cookie", &format!("worker_session={value}"))]))
        );
        assert_eq!(Auth::bearer("s3cret").sign_in("s3cret"), None);
    }
}
