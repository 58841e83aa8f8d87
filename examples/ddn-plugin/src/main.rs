//! `ddn-plugin`: the anomaly-detection pre-response plugin for Hasura DDN. Configured by environment variables
//! (see `.env.example`); it listens on `127.0.0.1:8787` by default and keeps its data in an SQLite file under
//! `./tmp`. SIGTERM or SIGINT stops it gracefully: everything pending is written before it exits 0.

use ddn_plugin::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    service_kit::run_service(
        "ddn-plugin",
        || {
            let config = Config::from_env()?;
            config.check_exposure()?;
            let settings = config.serve.clone();
            Ok::<_, ddn_plugin::PluginError>((config, settings))
        },
        |config, listener| ddn_plugin::serve(config, listener, service_kit::shutdown_signal()),
    )
}
