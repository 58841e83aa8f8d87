//! BGL's 2,000 labelled lines through `/analyze-batch`, as the issue measures it: in file order, without the
//! label token, in batches of 100, learned online.

use anomaly_core::metrics::{average_precision, roc_auc};
use serde_json::{Value, json};

use crate::{Service, shared_data, sqlite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgl_lines_through_the_batch_endpoint_beat_the_severity_keyword() {
    let Some(dir) = shared_data() else {
        eprintln!("SKIPPED bgl accuracy: no shared data folder (set ANOMALY_SHARED_DATA)");
        return;
    };
    let text = std::fs::read_to_string(dir.join("logs/bgl_2k/BGL_2k.log")).unwrap();
    let (_guard, db) = sqlite();
    let s = Service::start(&[("DATABASE_URL", &db), ("SECOND_OPINION", "false")]).await;
    let lines: Vec<(&str, bool)> = text
        .lines()
        .map(|l| {
            let (label, rest) = l.split_once(' ').unwrap();
            (rest, label != "-")
        })
        .collect();
    let mut scores = Vec::new();
    for (b, batch) in lines.chunks(100).enumerate() {
        let body: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(i, (l, _))| json!({"log_id": b * 100 + i, "log_text": l}))
            .collect();
        let (status, answers) = s.post("/analyze-batch", &Value::Array(body)).await;
        assert_eq!(status, 200, "{answers}");
        for (i, a) in answers.as_array().unwrap().iter().enumerate() {
            assert_eq!(
                a["log_id"],
                json!(b * 100 + i),
                "answers keep the request order"
            );
            scores.push(a["anomaly_score"].as_f64().unwrap());
        }
    }
    let labels: Vec<bool> = lines.iter().map(|(_, y)| *y).collect();
    let (auc, ap) = (
        roc_auc(&scores, &labels).unwrap(),
        average_precision(&scores, &labels).unwrap(),
    );
    eprintln!(
        "BGL 2k through /analyze-batch: ROC-AUC {auc:.4}, AP {ap:.4} (FATAL alone: 0.945, 0.41)"
    );
    assert!(auc >= 0.95, "ROC-AUC {auc:.4}");
    assert!(ap >= 0.45, "AP {ap:.4}");
    s.stop().await;
}
