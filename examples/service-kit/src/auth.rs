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

/// How long a browser stays signed in, checked by the service (the cookie's own `Max-Age` is the same).
pub(crate) const SESSION_SECONDS: u64 = 7 * 24 * 3_600;

/// The browser sign-in: a cookie `<expiry>.<HMAC-SHA-256 of the expiry>`, keyed by a key derived from the token's
/// digest (so the token itself is never stored in the browser, a changed token ends every session, and a copied
/// cookie ends at its expiry, which the service checks).
#[derive(Clone)]
struct Session {
    cookie: String,
    key: [u8; 32],
}

impl Session {
    fn mac(&self, expires: u64) -> [u8; 32] {
        // HMAC (RFC 2104) over SHA-256, the key being one block's worth or less.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.key);
        let pad = |byte: u8| block.map(|b| b ^ byte);
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(expires.to_be_bytes())
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }

    fn value(&self, expires: u64) -> String {
        let mac: String = self
            .mac(expires)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{expires}.{mac}")
    }

    /// Whether `value` is a cookie this service issued and it has not expired at `now` (Unix seconds).
    fn admits(&self, value: &str, now: u64) -> bool {
        let Some((expires, mac)) = value.split_once('.') else {
            return false;
        };
        let Ok(expires) = expires.parse::<u64>() else {
            return false;
        };
        if expires <= now || expires > now.saturating_add(SESSION_SECONDS) {
            return false;
        }
        let expected = self.value(expires);
        // Compared through digests, in constant time.
        let _ = mac;
        Auth::same(
            &Sha256::digest(expected.as_bytes()).into(),
            value.as_bytes(),
        )
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
        let key = Sha256::new()
            .chain_update(b"service-kit browser session v2\0")
            .chain_update(self.digest)
            .finalize()
            .into();
        self.session = Some(Session {
            cookie: cookie.into(),
            key,
        });
        self
    }

    /// The session cookie's name, when browsers can sign in.
    pub(crate) fn session_cookie(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.cookie.as_str())
    }

    /// The session cookie's value for a browser that gave `token`, when it is the right one: valid for
    /// [`SESSION_SECONDS`] from now.
    pub(crate) fn sign_in(&self, token: &str) -> Option<String> {
        let session = self.session.as_ref()?;
        Self::same(&self.digest, token.trim().as_bytes())
            .then(|| session.value(unix_now() + SESSION_SECONDS))
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
        let c = self
            .session
            .as_ref()
            .is_some_and(|s| cookie(headers, &s.cookie).is_some_and(|v| s.admits(v, unix_now())));
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
    use super::{Auth, SESSION_SECONDS};
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
        let value = auth.sign_in(" s3cret ").unwrap();
        assert!(
            !value.contains("s3cret") && value.len() > 64,
            "derived, not the token: {value}"
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
        // Another token's session, a forged expiry, an expired cookie: refused.
        let other = Auth::bearer("other").with_sign_in("worker_session");
        let theirs = other.sign_in("other").unwrap();
        assert!(!auth.admits(&headers(&[("cookie", &format!("worker_session={theirs}"))])));
        let session = auth.session.as_ref().unwrap();
        let now = super::unix_now();
        let (_, mac) = value.split_once('.').unwrap();
        assert!(!session.admits(&format!("{}.{mac}", now + 10 * SESSION_SECONDS), now));
        let old = session.value(now - 1);
        assert!(!session.admits(&old, now), "expired");
        assert!(session.admits(&session.value(now + 60), now));
        assert!(!session.admits("garbage", now) && !session.admits("12.zz", now));
    }
}
