//! The Node.js client's own tests (`clients/node`, Node's test runner) against the running service. Without
//! `node` (18 or later) the test says SKIPPED, unless `REQUIRE_NODE` is set (the project's test script sets it).

use std::process::Command;

use crate::{Service, sqlite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_client_passes_its_tests_against_the_service() {
    let version = Command::new("node").arg("--version").output();
    let major = version.as_ref().ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .trim_start_matches('v')
            .split('.')
            .next()?
            .parse::<u32>()
            .ok()
    });
    if major.is_none_or(|m| m < 18) {
        assert!(
            std::env::var_os("REQUIRE_NODE").is_none(),
            "REQUIRE_NODE is set but node 18+ cannot run: {version:?}"
        );
        eprintln!("SKIPPED node client test: node 18 or later is not installed");
        return;
    }
    let (_guard, db) = sqlite();
    let s = Service::start(&[("DATABASE_URL", &db), ("SECOND_OPINION", "false")]).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/node");
    let out = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=tap", "test/client.test.js"])
        .current_dir(&dir)
        .env("LOG_ANALYZER_URL", &s.url)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node --test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("# skipped 0"),
        "a client test was skipped:\n{stdout}"
    );
    s.stop().await;
}
