//! The docs page in a real browser: it renders the OpenAPI document and its "Send" button calls the service.

use service_kit::testing::browser::{Driver, Locator, eval, wait_for};

use crate::{Service, sqlite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_lists_every_route_and_tries_one() {
    let Some(driver) = Driver::start() else {
        eprintln!("SKIPPED docs browser test: chromedriver cannot run; install chromium-driver");
        return;
    };
    let (_guard, db) = sqlite();
    let s = Service::start(&[("DATABASE_URL", &db), ("SECOND_OPINION", "false")]).await;
    let c = driver.browser().await;
    c.goto(&format!("{}/docs", s.url)).await.unwrap();
    wait_for(
        &c,
        "the operations render",
        "return document.getElementById('operations').dataset.ready === 'true';",
    )
    .await;
    let ops = eval(
        &c,
        "return [...document.querySelectorAll('section.op code')].map(e => e.textContent);",
    )
    .await;
    for route in [
        "/analyze-log",
        "/analyze-batch",
        "/health",
        "/templates",
        "/metrics",
    ] {
        assert!(
            ops.as_array().unwrap().iter().any(|r| r == route),
            "{route} missing from {ops}"
        );
    }
    c.find(Locator::Css("#op-analyzeLog header"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#send-analyzeLog"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "the answer shows", "return document.getElementById('output-analyzeLog').textContent.includes('anomaly_score');").await;
    let shown = eval(
        &c,
        "return document.getElementById('output-analyzeLog').textContent;",
    )
    .await;
    assert!(shown.as_str().unwrap().starts_with("200"), "{shown}");
    // No request left the page for another origin (no CDN).
    let foreign = eval(&c, "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin));").await;
    assert_eq!(foreign, serde_json::json!([]));
    c.close().await.unwrap();
    s.stop().await;
}
