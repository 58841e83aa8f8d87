//! `sql-watcher`: Anomaly Studio on `127.0.0.1:8000` by default (`serve`, the default command: web UI, REST API
//! and the scheduler in one process); `create-user --username NAME` makes an account and prints an API token;
//! `import-dump DUMP.sql …` loads a dump into a new database with a read-only account. Configured by environment
//! variables (see the README). SIGTERM or SIGINT stops the service gracefully (exit 0).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sql_watcher::db::Db;
use sql_watcher::import::{ImportRequest, import_dump};
use sql_watcher::{Config, WatcherError, accounts};

/// Command line.
#[derive(Parser)]
#[command(version, about = "Anomaly Studio: watch SQL tables for anomalies")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the web UI and the API and runs the scheduler (the default).
    Serve,
    /// Creates a user (password from SQL_WATCHER_PASSWORD, or asked on the terminal) and prints an API token.
    CreateUser {
        /// The user name.
        #[arg(long)]
        username: String,
    },
    /// Creates a database from a SQL dump and a read-only account on it (MariaDB or PostgreSQL); prints the
    /// details to paste into the data-source form.
    ImportDump {
        /// The dump (mysqldump output, or pg_dump's plain format).
        dump: std::path::PathBuf,
        /// The database to create.
        #[arg(long)]
        database: String,
        /// The read-only account to create (or re-create).
        #[arg(long)]
        user: String,
        /// Its password (default: IMPORT_PASSWORD, so that it stays out of the process list and shell history).
        #[arg(long, env = "IMPORT_PASSWORD", hide_env_values = true)]
        password: String,
        /// An administrator's URL: mysql://root@127.0.0.1:3306/ or postgres://postgres@127.0.0.1:5432/postgres.
        #[arg(long)]
        admin_url: String,
        /// Drop the database first when it exists.
        #[arg(long)]
        replace: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => service_kit::run_service(
            "sql-watcher",
            || {
                let config = Config::from_env()?;
                let settings = config.serve.clone();
                Ok::<_, WatcherError>((config, settings))
            },
            |config, listener| sql_watcher::serve(config, listener, service_kit::shutdown_signal()),
        ),
        Command::CreateUser { username } => once("create-user", create_user(username)),
        Command::ImportDump {
            dump,
            database,
            user,
            password,
            admin_url,
            replace,
        } => once("import-dump", async move {
            let report = import_dump(&ImportRequest {
                dump,
                database,
                user,
                password,
                admin_url,
                replace,
            })
            .await?;
            let json = serde_json::to_string_pretty(&report).unwrap_or_default();
            Ok(format!(
                "Imported ({} steps). Paste these into the data-source form:\n{json}",
                report.statements
            ))
        }),
    }
}

/// Runs a one-shot command and prints its answer (or its error on stderr, exit 1).
fn once(
    name: &str,
    work: impl std::future::Future<Output = Result<String, WatcherError>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("sql-watcher {name}: cannot start the async runtime: {e}");
            }
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(work) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("sql-watcher {name}: {e}");
            }
            ExitCode::from(1)
        }
    }
}

async fn create_user(username: String) -> Result<String, WatcherError> {
    let config = Config::from_env()?;
    accounts::check_username(&username)?;
    let password = match std::env::var("SQL_WATCHER_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => read_password()?,
    };
    let db = Db::connect(&config.database_url, config.store_timeout).await?;
    let (_, token) =
        accounts::create_user(&db, &username, &password, config.max_tokens_per_user).await?;
    Ok(format!(
        "Created user {username}. API token (shown once; send it as `Authorization: Token <key>`):\n{token}"
    ))
}

/// Reads a password from standard input (the terminal echoes it: set SQL_WATCHER_PASSWORD to avoid that).
fn read_password() -> Result<String, WatcherError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        #[allow(clippy::print_stderr)]
        {
            eprint!("Password (echoed; SQL_WATCHER_PASSWORD avoids this): ");
        }
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| WatcherError::Io {
            what: "reading the password".into(),
            source: e,
        })?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
