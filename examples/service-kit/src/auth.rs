//! [`Auth`]: the service's token, checked on every route but `/health` and `/ready`.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// A shared secret a request must carry: always accepted as `Authorization: Bearer <token>`, and also in a
/// service's own header when it has one (the GraphQL plugin's `hasura-m-auth`). Only a digest is kept, and
/// digests are compared in constant time: neither the content nor the length of the token leaks through timing.
#[derive(Clone)]
pub struct Auth {
    digest: [u8; 32],
    header: Option<String>,
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
        }
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
        let a = bearer.is_some_and(|t| self.matches(t.as_bytes()));
        let b = own.is_some_and(|t| self.matches(t));
        a | b
    }

    fn matches(&self, given: &[u8]) -> bool {
        let given = Sha256::digest(given);
        given
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
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
}
