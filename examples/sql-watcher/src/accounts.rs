//! Accounts: passwords hashed with Argon2id, API tokens and session cookies as random secrets of which only a
//! SHA-256 digest is stored, CSRF tokens per session, and the rules for user names and passwords.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

use crate::error::WatcherError;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password accepted (hashing cost grows with it).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Random bytes from the operating system, as lowercase hex.
///
/// # Errors
/// [`WatcherError::Io`] when the system's generator fails.
pub fn random_hex(bytes: usize) -> Result<String, WatcherError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| WatcherError::Io {
        what: "reading the system's random generator".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex(&buf))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 digest (hex) under which a token or session secret is stored: a stolen database holds no
/// usable credential.
pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// A new API token: 40 hex characters, as the original framework's tokens.
///
/// # Errors
/// As [`random_hex`].
pub fn new_token() -> Result<String, WatcherError> {
    random_hex(20)
}

/// Checks a user name as the original's framework did: 1 to 150 characters, letters, digits and `@.+-_`.
///
/// # Errors
/// [`WatcherError::Invalid`] for `username`.
pub fn check_username(name: &str) -> Result<(), WatcherError> {
    let n = name.chars().count();
    if n == 0 || n > 150 {
        return Err(WatcherError::invalid("username", "1 to 150 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || "@.+-_".contains(c))
    {
        return Err(WatcherError::invalid(
            "username",
            "letters, digits and @ . + - _ only",
        ));
    }
    Ok(())
}

/// Hashes a password (Argon2id, a fresh salt, PHC string).
///
/// # Errors
/// [`WatcherError::Invalid`] for `password` shorter than [`MIN_PASSWORD_CHARS`] or longer than
/// [`MAX_PASSWORD_BYTES`].
pub fn hash_password(password: &str) -> Result<String, WatcherError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(WatcherError::invalid(
            "password",
            format!("at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(WatcherError::invalid(
            "password",
            format!("at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| WatcherError::Io {
        what: "reading the system's random generator".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| WatcherError::invalid("password", e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| WatcherError::invalid("password", e.to_string()))
}

/// Whether `password` matches a stored hash (an unreadable hash matches nothing).
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Creates a user with `password` (hashed on the blocking pool) and one API token: the user and the token, which
/// is shown to its owner once and stored only as a digest.
///
/// # Errors
/// [`WatcherError::Invalid`] for an unusable name or password; [`WatcherError::UsernameTaken`];
/// [`WatcherError::Database`].
pub async fn create_user(
    db: &crate::db::Db,
    username: &str,
    password: &str,
    max_tokens: u64,
) -> Result<(crate::db::User, String), WatcherError> {
    check_username(username)?;
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| WatcherError::Source(e.to_string()))??;
    let user = db.create_user(username, &hash).await?;
    let token = new_token()?;
    db.add_token(user.id, &digest(&token), "create-user", max_tokens)
        .await?;
    Ok((user, token))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn names_tokens_and_digests() {
        assert!(check_username("ana.b+c@x-y_z").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("a b").is_err());
        let t = new_token().unwrap();
        assert_eq!(t.len(), 40);
        assert_ne!(t, new_token().unwrap());
        assert_eq!(digest("abc").len(), 64);
        assert!(
            same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab")
        );
    }
}
