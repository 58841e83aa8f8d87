//! The web UI in a real headless Chromium: register, add a source, fetch, see the planted anomalies
//! highlighted with their reasons, sign out and in again; forms and session API calls without the CSRF token
//! are refused.

use service_kit::testing::browser::{Client, Driver, Locator, eval, wait_for};

use crate::App;
use crate::table::{PLANTED, Watched};

async fn fill(c: &Client, id: &str, text: &str) {
    let e = c.find(Locator::Id(id)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn path(c: &Client) -> String {
    eval(c, "return location.pathname;")
        .await
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_add_a_source_fetch_and_see_the_anomalies() {
    let Some(driver) = Driver::start() else {
        eprintln!("SKIPPED UI browser test: chromedriver cannot run; install chromium-driver");
        return;
    };
    let app = App::start(&[]).await;
    let w = Watched::create("sqlite", None, "sw_ui").await;
    let c = driver.browser().await;

    c.goto(&format!("{}/", app.url)).await.unwrap();
    click(&c, "a[href='/register']").await;
    fill(&c, "username", "carla").await;
    fill(&c, "password", "a long password").await;
    fill(&c, "password2", "a long password").await;
    click(&c, "#submit").await;
    wait_for(
        &c,
        "the dashboard",
        "return location.pathname === '/detect/';",
    )
    .await;

    click(&c, "#add-source").await;
    fill(&c, "alias", "metrics").await;
    eval(
        &c,
        "document.getElementById('engine').value = 'sqlite'; return true;",
    )
    .await;
    fill(&c, "name", w.fields["name"].as_str().unwrap()).await;
    fill(
        &c,
        "sql",
        &format!("SELECT id, ts, host, cpu, latency, status FROM {}", w.table),
    )
    .await;
    fill(&c, "timestamp_column", "ts").await;
    fill(&c, "series_columns", "host").await;
    fill(&c, "sensitivity", "0.01").await;
    click(&c, "#save").await;
    wait_for(
        &c,
        "the source's page",
        "return /^\\/detect\\/sources\\/\\d+\\/$/.test(location.pathname);",
    )
    .await;

    click(&c, "#fetch").await;
    wait_for(
        &c,
        "anomalous rows highlighted",
        "return document.querySelectorAll('tr.anomaly').length >= 3;",
    )
    .await;
    assert_eq!(
        eval(
            &c,
            "return document.getElementById('status').textContent.trim();"
        )
        .await,
        "ok"
    );
    c.goto(&format!("{}/detect/anomalies/", app.url))
        .await
        .unwrap();
    let top = eval(
        &c,
        "return [...document.querySelectorAll('tr.anomaly')].slice(0, 3).map(tr => \
         [JSON.parse(tr.querySelector('code.json').textContent).id, tr.querySelector('td.why').textContent]);",
    )
    .await;
    let mut ids: Vec<u64> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, PLANTED.to_vec(), "{top}");
    assert!(
        top.as_array()
            .unwrap()
            .iter()
            .all(|p| !p[1].as_str().unwrap().is_empty()),
        "each says why: {top}"
    );

    // Without the page's CSRF token, a form and a session's API call are refused.
    eval(
        &c,
        "window.__form = 0; window.__api = 0; \
         fetch('/detect/tokens', {method: 'POST', body: new URLSearchParams({})}).then(r => window.__form = r.status); \
         fetch('/detect/api/datasources/', {method: 'POST', headers: {'content-type': 'application/json'}, body: '{}'}) \
           .then(r => window.__api = r.status); return true;",
    )
    .await;
    wait_for(
        &c,
        "both refusals",
        "return window.__form === 403 && window.__api === 403;",
    )
    .await;
    // A session reads the API.
    eval(&c, "window.__list = null; fetch('/detect/api/datasources/').then(r => r.json()).then(j => window.__list = j.count); return true;").await;
    wait_for(&c, "the session's API read", "return window.__list === 1;").await;

    click(&c, "#logout").await;
    wait_for(&c, "signed out", "return location.pathname === '/';").await;
    c.goto(&format!("{}/detect/", app.url)).await.unwrap();
    assert_eq!(path(&c).await, "/login");
    fill(&c, "username", "carla").await;
    fill(&c, "password", "wrong password").await;
    click(&c, "#submit").await;
    wait_for(
        &c,
        "the refusal",
        "return document.querySelector('.error') !== null;",
    )
    .await;
    fill(&c, "username", "carla").await;
    fill(&c, "password", "a long password").await;
    click(&c, "#submit").await;
    wait_for(
        &c,
        "back on the dashboard",
        "return location.pathname === '/detect/';",
    )
    .await;
    let listed = eval(
        &c,
        "return document.querySelectorAll('#sources tbody tr').length;",
    )
    .await;
    assert_eq!(listed, 1);
    // Nothing came from another origin.
    let foreign = eval(&c, "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin));").await;
    assert_eq!(foreign, serde_json::json!([]));
    c.close().await.unwrap();
    app.stop().await;
}
