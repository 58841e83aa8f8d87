//! Helpers for the services' own tests.

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on `exposition` (Prometheus text format): `Ok(true)` when it passes, `Ok(false)`
/// when promtool is not installed and `REQUIRE_PROMTOOL` is unset (the test should then say SKIPPED; the
/// project's test script installs promtool and sets the variable, so CI always checks).
///
/// # Errors
/// What promtool reported, or why it could not run.
pub fn promtool_check(exposition: &str) -> Result<bool, String> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if std::env::var_os("REQUIRE_PROMTOOL").is_some() {
                Err("promtool is not installed but REQUIRE_PROMTOOL is set".into())
            } else {
                Ok(false)
            };
        }
        Err(e) => return Err(format!("cannot run promtool: {e}")),
    };
    child
        .stdin
        .take()
        .ok_or("promtool has no stdin")?
        .write_all(exposition.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(format!(
            "promtool check metrics failed:\n{}{}\n--- exposition ---\n{exposition}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `promtool` with `args` (`["check", "config", "deploy/prometheus.yml"]`): `Ok(true)` when it passes,
/// `Ok(false)` when promtool is not installed and `REQUIRE_PROMTOOL` is unset.
///
/// # Errors
/// What promtool reported, or why it could not run.
pub fn promtool(args: &[&str]) -> Result<bool, String> {
    match Command::new("promtool").args(args).output() {
        Ok(out) if out.status.success() => Ok(true),
        Ok(out) => Err(format!(
            "promtool {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var_os("REQUIRE_PROMTOOL").is_some() {
                Err("promtool is not installed but REQUIRE_PROMTOOL is set".into())
            } else {
                Ok(false)
            }
        }
        Err(e) => Err(format!("cannot run promtool: {e}")),
    }
}
