//! The dashboard in a real browser: Debian's chromium, headless, driven through chromedriver (WebDriver).
//! `CHROMEDRIVER` (default `chromedriver` on the `PATH`) and `CHROME_BIN` (default `/usr/bin/chromium`) name
//! them; without chromedriver the test says SKIPPED, unless `REQUIRE_BROWSER` is set (the project's test script
//! installs both and sets it).

use std::time::Duration;

use metrics_worker::TestHooks;
use serde_json::json;
use service_kit::testing::browser::{Driver, Locator, eval, wait_for};

use crate::common::{Harness, nats_url, stationary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn rows_appear_without_a_reload_and_expand_to_their_context() {
    let Some(url) = nats_url("dashboard") else {
        return;
    };
    let Some(driver) = Driver::start() else {
        eprintln!(
            "SKIPPED dashboard browser test: chromedriver cannot run; install chromium-driver"
        );
        return;
    };
    let h = Harness::new(&url, "dashboard", None).await;
    let w = h
        .start(
            h.config(&[("IF_MIN_ANOMALY_CONSEC", "1000")]),
            TestHooks::default(),
        )
        .await;
    let mut values = stationary(30, 1);
    values[25] = 300.0;
    h.publish("web.checkout", &values).await;
    w.wait_until(
        Duration::from_secs(20),
        "the points are processed",
        |w| async move { w.metric("metrics_processed_total").await >= 30.0 },
    )
    .await;
    let first = w.anomalies("web.checkout").await.len();
    assert!(first >= 1, "the spike is detected");

    let c = driver.browser().await;
    c.goto(&w.url("/ui")).await.unwrap();
    let rows = c.find_all(Locator::Css("#rows tr[data-id]")).await.unwrap();
    assert_eq!(
        rows.len(),
        first,
        "the page is rendered with the stored rows"
    );
    let headers: Vec<String> = {
        let mut t = Vec::new();
        for th in c.find_all(Locator::Css("thead th")).await.unwrap() {
            t.push(th.text().await.unwrap());
        }
        t
    };
    for col in [
        "ID",
        "Detected At",
        "Series",
        "Value",
        "Method",
        "Score",
        "Context",
        "Config",
    ] {
        assert!(
            headers.iter().any(|h| h.eq_ignore_ascii_case(col)),
            "column {col} in {headers:?}"
        );
    }
    assert!(
        c.find(Locator::Css("#rows tr svg.chart polyline"))
            .await
            .is_ok(),
        "a chart of the buffer"
    );
    wait_for(
        &c,
        "the live stream is connected",
        "return document.getElementById('live').dataset.state === 'live';",
    )
    .await;
    // A marker that a reload would erase.
    eval(&c, "window.__noReload = 'still here'; return null;").await;

    // A detection in another series while the page is open.
    let mut values = stationary(30, 2);
    values[25] = -250.0;
    h.publish("db.orders", &values).await;
    wait_for(
        &c,
        "the new detection appears",
        "return !!document.querySelector('#rows tr[data-id] a[href*=\"db.orders\"]');",
    )
    .await;
    w.wait_until(
        Duration::from_secs(20),
        "every point is processed",
        |w| async move { w.metric("metrics_processed_total").await >= 60.0 },
    )
    .await;
    let stored =
        (w.anomalies("web.checkout").await.len() + w.anomalies("db.orders").await.len()) as u64;
    wait_for(
        &c,
        "the count and the rows follow",
        &format!(
            "return document.getElementById('count').textContent === '{stored}' \
             && document.querySelectorAll('#rows tr[data-id]').length === {stored};"
        ),
    )
    .await;
    assert_eq!(
        eval(&c, "return window.__noReload || null;").await,
        json!("still here"),
        "no reload"
    );
    let newest_series = c
        .find(Locator::Css("#rows tr:first-child td[data-label=Series]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(newest_series, "db.orders", "newest first");

    // A row expands to its context, as JSON.
    let context = "#rows tr:first-child td[data-label=Context]";
    assert_eq!(
        eval(
            &c,
            &format!("return document.querySelector('{context} details').open;")
        )
        .await,
        json!(false)
    );
    c.find(Locator::Css(&format!("{context} summary")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let pre = c
        .find(Locator::Css(&format!("{context} pre")))
        .await
        .unwrap();
    assert!(pre.is_displayed().await.unwrap());
    let text = pre.text().await.unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&text).expect("the context is JSON");
    assert_eq!(parsed["series"], "db.orders");
    assert!(
        parsed["input_buffer"]
            .as_array()
            .is_some_and(|b| b.len() > 5),
        "{parsed}"
    );

    // Readable on a phone: no sideways scrolling, rows as cards.
    c.set_window_size(390, 844).await.unwrap();
    wait_for(
        &c,
        "the layout fits a phone's width",
        "return document.documentElement.scrollWidth <= window.innerWidth + 1 \
         && getComputedStyle(document.querySelector('thead')).display === 'none';",
    )
    .await;

    // A filter by series shows that series alone.
    c.goto(&w.url("/ui?series=web.checkout")).await.unwrap();
    let series: Vec<String> = {
        let mut t = Vec::new();
        for td in c
            .find_all(Locator::Css("#rows td[data-label=Series]"))
            .await
            .unwrap()
        {
            t.push(td.text().await.unwrap());
        }
        t
    };
    assert!(
        !series.is_empty() && series.iter().all(|s| s == "web.checkout"),
        "{series:?}"
    );

    c.close().await.unwrap();
    w.stop().await;
    h.cleanup().await;
}
