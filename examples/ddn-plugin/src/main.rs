//! `ddn-plugin`: the anomaly-detection pre-response plugin for Hasura DDN. Configured by environment variables
//! (see `.env.example`); it listens on `127.0.0.1:8787` by default and keeps its data in an SQLite file under
//! `./tmp`. SIGTERM or SIGINT stops it gracefully: everything pending is written before it exits 0.

use ddn_plugin::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("ddn-plugin: cannot start the async runtime: {e}");
            }
            return std::process::ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run());
    // Work the shutdown deadline cut off (a database write that hangs) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn run() -> std::process::ExitCode {
    let config = match Config::from_env().and_then(|c| c.check_exposure().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("ddn-plugin: {e}");
            }
            return std::process::ExitCode::from(2);
        }
    };
    service_kit::init_logging(&config.serve);
    let listener = match config.serve.bind().await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return std::process::ExitCode::from(1);
        }
    };
    match ddn_plugin::serve(config, listener, service_kit::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "ddn-plugin stopped");
            std::process::ExitCode::from(1)
        }
    }
}
