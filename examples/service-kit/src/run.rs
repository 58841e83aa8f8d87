//! [`run_service`]: the `main` every service binary shares; [`run_command`]: the `main` of a one-shot command.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::logging::init_logging;
use crate::settings::ServeSettings;

/// How long the runtime waits, once the service returned, for blocking work its shutdown deadline cut off (a
/// database write that hangs) before the process exits anyway.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// Runs a service binary: `load` reads and checks its configuration (including
/// [`ServeSettings::check_exposure`]) and gives its [`ServeSettings`]; then logging starts, the address is bound,
/// and `serve` runs with the listener until it returns. Exit codes: 0 after a clean stop, 2 for a configuration
/// the service refuses (said on stderr, before logging exists), 1 when it cannot start or stops with an error.
/// The runtime waits at most a second for work left behind, so a stop never hangs past the service's deadline.
pub fn run_service<C, E, S, F>(
    name: &str,
    load: impl FnOnce() -> Result<(C, ServeSettings), E>,
    serve: impl FnOnce(C, TcpListener) -> F,
) -> ExitCode
where
    E: std::fmt::Display,
    S: std::fmt::Display,
    F: Future<Output = Result<(), S>>,
{
    let (config, settings, runtime) = match start(name, load) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let code = runtime.block_on(async {
        init_logging(&settings);
        let listener = match settings.bind().await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::from(1);
            }
        };
        match serve(config, listener).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "{name} stopped");
                ExitCode::from(1)
            }
        }
    });
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

/// Says `what` on stderr, prefixed with the binary's name (before logging exists, or for a command's result).
fn say(name: &str, what: impl std::fmt::Display) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{name}: {what}");
    }
}

/// What both mains do first: the configuration (exit 2 when refused) and a multi-threaded runtime (exit 1 when it
/// cannot start), each failure said on stderr.
fn start<C, E: std::fmt::Display>(
    name: &str,
    load: impl FnOnce() -> Result<(C, ServeSettings), E>,
) -> Result<(C, ServeSettings, tokio::runtime::Runtime), ExitCode> {
    let (config, settings) = load().map_err(|e| {
        say(name, e);
        ExitCode::from(2)
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            say(name, format!("cannot start the async runtime: {e}"));
            ExitCode::from(1)
        })?;
    Ok((config, settings, runtime))
}

/// Runs a one-shot command of a service binary (one that does its work and exits): `load` reads and checks its
/// configuration and gives its [`ServeSettings`] (for the log settings); logs go to standard error; `run` runs on a
/// multi-threaded runtime and its result is printed on standard output as JSON. Exit codes as
/// [`run_service`]'s: 0 done, 2 a configuration refused (said on stderr), 1 a failure (said on stderr).
pub fn run_command<C, E, T, S, F>(
    name: &str,
    load: impl FnOnce() -> Result<(C, ServeSettings), E>,
    run: impl FnOnce(C) -> F,
) -> ExitCode
where
    E: std::fmt::Display,
    S: std::fmt::Display,
    T: serde::Serialize,
    F: Future<Output = Result<T, S>>,
{
    let (config, settings, runtime) = match start(name, load) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        crate::init_logging_to_stderr(&settings);
        run(config).await
    });
    runtime.shutdown_timeout(EXIT_GRACE);
    match result.map(|r| serde_json::to_string_pretty(&r)) {
        Ok(Ok(json)) => {
            #[allow(clippy::print_stdout)]
            {
                println!("{json}");
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            say(name, format!("the result cannot be written as JSON: {e}"));
            ExitCode::from(1)
        }
        Err(e) => {
            say(name, e);
            ExitCode::from(1)
        }
    }
}
