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

/// Web pages in a real browser: Debian's chromium, headless, driven through chromedriver (WebDriver).
/// `CHROMEDRIVER` (default `chromedriver` on the `PATH`) and `CHROME_BIN` (default `/usr/bin/chromium`) name them;
/// without either [`browser::Driver::start`] returns `None` (the test should say SKIPPED), unless
/// `REQUIRE_BROWSER` is set (the project's test script installs both and sets it).
#[cfg(feature = "browser")]
pub mod browser {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub use fantoccini::{Client, Locator};
    use serde_json::json;

    /// chromedriver on a free port, killed on drop.
    #[derive(Debug)]
    pub struct Driver {
        child: Child,
        port: u16,
    }

    impl Drop for Driver {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Driver {
        /// Starts chromedriver, or `None` when it cannot run and `REQUIRE_BROWSER` is unset.
        ///
        /// # Panics
        /// When `REQUIRE_BROWSER` is set and chromedriver cannot run.
        pub fn start() -> Option<Driver> {
            let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
            let chrome = std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
            if !std::path::Path::new(&chrome).exists() {
                assert!(
                    std::env::var_os("REQUIRE_BROWSER").is_none(),
                    "REQUIRE_BROWSER is set but the browser `{chrome}` is missing"
                );
                return None;
            }
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .ok()?;
            match Command::new(&program)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(child) => Some(Driver { child, port }),
                Err(e) => {
                    assert!(
                        std::env::var_os("REQUIRE_BROWSER").is_none(),
                        "REQUIRE_BROWSER is set but `{program}` cannot run: {e}"
                    );
                    None
                }
            }
        }

        /// A new headless browser session (retried while chromedriver starts, for up to 30 s).
        ///
        /// # Panics
        /// When no session starts within 30 s.
        pub async fn browser(&self) -> Client {
            let chrome = std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
            let capabilities = json!({
                "goog:chromeOptions": {
                    "binary": chrome,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"],
                }
            });
            let Some(capabilities) = capabilities.as_object().cloned() else {
                unreachable!("a JSON object literal")
            };
            let started = Instant::now();
            loop {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                let attempt = fantoccini::ClientBuilder::new(connector)
                    .capabilities(capabilities.clone())
                    .connect(&format!("http://127.0.0.1:{}", self.port))
                    .await;
                match attempt {
                    Ok(c) => return c,
                    Err(e) => {
                        assert!(
                            started.elapsed() < Duration::from_secs(30),
                            "cannot start the browser: {e}"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }

    /// Evaluates `script` (a function body that returns a value) in the page.
    ///
    /// # Panics
    /// When the script throws.
    pub async fn eval(c: &Client, script: &str) -> serde_json::Value {
        match c.execute(script, vec![]).await {
            Ok(v) => v,
            Err(e) => panic!("script failed: {e}\n{script}"),
        }
    }

    /// Waits up to 20 s until `script` returns `true`.
    ///
    /// # Panics
    /// On the timeout, naming `what`.
    pub async fn wait_for(c: &Client, what: &str, script: &str) {
        let started = Instant::now();
        while eval(c, script).await != json!(true) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
