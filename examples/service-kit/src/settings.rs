//! [`ServeSettings`]: what every service reads from the environment to listen, bound requests and stop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::auth::Auth;
use crate::env::Env;
use crate::error::KitError;

/// How logs are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line (`LOG_FORMAT=json`), for log collectors.
    Json,
}

/// The settings every service shares.
///
/// | variable | default | meaning |
/// | --- | --- | --- |
/// | `HOST` | `127.0.0.1` | address to listen on; anything but loopback needs authentication |
/// | `PORT` | per service | port to listen on |
/// | `MAX_REQUEST_BYTES` | 10 MiB | largest request body |
/// | `REQUEST_TIMEOUT_SECONDS` | 30 | longest a request may take, body read included (408 after) |
/// | `HEADER_TIMEOUT_SECONDS` | 10 | longest a client may take to send its request headers (connection closed) |
/// | `MAX_CONNECTIONS` | 1,024 | open connections at once; beyond it new ones wait in the listen backlog |
/// | `SHUTDOWN_TIMEOUT_SECONDS` | 10 | after SIGTERM/SIGINT: in-flight requests and flushing, all within this |
/// | `ALLOW_UNAUTHENTICATED` | `false` | serve beyond loopback without a token (logged as a warning) |
/// | `LOG_LEVEL` | `info` | a `tracing` filter (`debug`, `info,sqlx=warn`, …) |
/// | `LOG_FORMAT` | `text` | `text` or `json` |
#[derive(Debug, Clone, PartialEq)]
pub struct ServeSettings {
    /// `HOST`.
    pub host: IpAddr,
    /// `PORT`.
    pub port: u16,
    /// `MAX_REQUEST_BYTES`.
    pub max_body_bytes: usize,
    /// `REQUEST_TIMEOUT_SECONDS`.
    pub request_timeout: Duration,
    /// `HEADER_TIMEOUT_SECONDS`.
    pub header_timeout: Duration,
    /// `SHUTDOWN_TIMEOUT_SECONDS`.
    pub shutdown_timeout: Duration,
    /// `MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// `ALLOW_UNAUTHENTICATED`.
    pub allow_unauthenticated: bool,
    /// `LOG_LEVEL`.
    pub log_level: String,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
}

impl ServeSettings {
    /// The settings in `env`, with `default_port` when `PORT` is unset.
    ///
    /// # Errors
    /// [`KitError::Config`] naming the variable whose value is unusable.
    pub fn from_env(env: &Env<'_>, default_port: u16) -> Result<Self, KitError> {
        let host = match env.get("HOST") {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(h) if h.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(h) => h.parse().map_err(|_| {
                KitError::config(
                    "HOST",
                    format!("`{h}` is not an IP address (try 127.0.0.1 or 0.0.0.0)"),
                )
            })?,
        };
        let log_format = match env
            .get("LOG_FORMAT")
            .map(|f| f.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(f) => {
                return Err(KitError::config(
                    "LOG_FORMAT",
                    format!("`{f}` is neither text nor json"),
                ));
            }
        };
        Ok(ServeSettings {
            host,
            port: env.number("PORT", default_port, 0, u16::MAX)?,
            max_body_bytes: env.number("MAX_REQUEST_BYTES", 10 * 1024 * 1024, 1, 1 << 30)?,
            request_timeout: env.seconds("REQUEST_TIMEOUT_SECONDS", 30, 1, 3_600)?,
            header_timeout: env.seconds("HEADER_TIMEOUT_SECONDS", 10, 1, 600)?,
            shutdown_timeout: env.seconds("SHUTDOWN_TIMEOUT_SECONDS", 10, 1, 3_600)?,
            max_connections: env.number("MAX_CONNECTIONS", 1_024, 1, 1_000_000)?,
            allow_unauthenticated: env.flag("ALLOW_UNAUTHENTICATED")?,
            log_level: env.get("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            log_format,
        })
    }

    /// The address to listen on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// Refuses to serve beyond loopback without authentication, unless `ALLOW_UNAUTHENTICATED` says so (then it
    /// warns). `how` names the variable that sets the service's credentials, for the message.
    ///
    /// ```
    /// use service_kit::{Auth, Env, ServeSettings};
    ///
    /// let public = ServeSettings::from_env(&Env::from_lookup(|n| (n == "HOST").then(|| "0.0.0.0".into())), 80)?;
    /// assert!(public.check_exposure(None, "API_TOKEN").is_err());
    /// assert!(public.check_exposure(Some(&Auth::bearer("t0ken")), "API_TOKEN").is_ok());
    /// let local = ServeSettings::from_env(&Env::from_lookup(|_| None), 80)?;
    /// assert!(local.check_exposure(None, "API_TOKEN").is_ok());
    /// # Ok::<(), service_kit::KitError>(())
    /// ```
    ///
    /// # Errors
    /// [`KitError::Unauthenticated`] saying how to set one.
    pub fn check_exposure(&self, auth: Option<&Auth>, how: &str) -> Result<(), KitError> {
        if auth.is_some() || self.host.is_loopback() {
            return Ok(());
        }
        if self.allow_unauthenticated {
            tracing::warn!(
                host = %self.host,
                "ALLOW_UNAUTHENTICATED=true: serving beyond loopback without authentication; anyone who can \
                 reach the port can read and change this service's data"
            );
            return Ok(());
        }
        Err(KitError::Unauthenticated {
            host: self.host.to_string(),
            how: how.into(),
        })
    }

    /// Listens on [`addr`](Self::addr).
    ///
    /// # Errors
    /// [`KitError::Bind`].
    pub async fn bind(&self) -> Result<tokio::net::TcpListener, KitError> {
        let addr = self.addr();
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| KitError::Bind { addr, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<ServeSettings, KitError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServeSettings::from_env(
            &Env::from_lookup(move |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())),
            8080,
        )
    }

    #[test]
    fn defaults_listen_on_loopback_only() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.addr().to_string(), "127.0.0.1:8080");
        assert_eq!(s.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(s.log_format, LogFormat::Text);
        assert!(!s.allow_unauthenticated);
        assert!(s.check_exposure(None, "API_TOKEN").is_ok());
        assert!(
            settings(&[("HOST", "::1")])
                .unwrap()
                .check_exposure(None, "X")
                .is_ok()
        );
    }

    #[test]
    fn beyond_loopback_needs_a_token_or_an_explicit_opt_out() {
        for host in ["0.0.0.0", "::", "10.1.2.3"] {
            let err = settings(&[("HOST", host)])
                .unwrap()
                .check_exposure(None, "PLUGIN_SECRET")
                .unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("PLUGIN_SECRET") && text.contains("ALLOW_UNAUTHENTICATED"),
                "{text}"
            );
        }
        let open = settings(&[("HOST", "0.0.0.0"), ("ALLOW_UNAUTHENTICATED", "true")]).unwrap();
        assert!(open.check_exposure(None, "PLUGIN_SECRET").is_ok());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("HOST", "my-laptop"),
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "0"),
            ("HEADER_TIMEOUT_SECONDS", "-1"),
            ("REQUEST_TIMEOUT_SECONDS", "1e9"),
            ("MAX_REQUEST_BYTES", "0"),
            ("MAX_CONNECTIONS", "0"),
            ("ALLOW_UNAUTHENTICATED", "maybe"),
            ("LOG_FORMAT", "xml"),
        ] {
            let err = settings(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }
}
