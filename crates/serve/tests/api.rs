//! The HTTP API of a ready server: answers equal to `model::Model::predict`, the model headers,
//! every error case, and the metrics.

use serde_json::{Value, json};

use crate::fixture::{self, TestServer, get, post, post_json};

/// What `model::Model::predict` says about `texts`, as the server should answer it.
pub(crate) fn expected(model_path: &std::path::Path, texts: &[String]) -> Vec<Value> {
    expected_for(model_path, model::Batch::Texts(texts))
}

/// What `model::Model::predict` says about `batch`, as the server should answer it.
pub(crate) fn expected_for(model_path: &std::path::Path, batch: model::Batch<'_>) -> Vec<Value> {
    let runtime = model::load_runtime(&fixture::search()).unwrap();
    let model = model::Model::load(runtime, model_path, 1).unwrap();
    let classes = model.signature().classes.clone().unwrap_or_default();
    let prediction = model.predict(batch).unwrap();
    let probabilities = prediction.probabilities.unwrap();
    let row = |(label, probs): (&String, &Vec<f32>)| {
        let keyed: serde_json::Map<String, Value> = probs
            .iter()
            .enumerate()
            .map(|(i, p)| (classes.get(i).cloned().unwrap_or_else(|| i.to_string()), as_sent(*p)))
            .collect();
        json!({ "label": label, "probabilities": keyed })
    };
    prediction.labels.iter().zip(&probabilities).map(row).collect()
}

/// An f32 as the server writes it: its shortest decimal that reads back as the same f32.
pub(crate) fn as_sent(p: f32) -> Value {
    serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap()
}

#[test]
fn healthz_and_readyz_report_the_model() {
    let server = TestServer::ready(fixture::config(fixture::text_model()));
    let health = get(&server.url("/healthz"));
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    let digest = fixture::digest(fixture::text_model());
    let ready = get(&server.url("/readyz"));
    assert_eq!(ready.status, 200);
    let version = fixture::default_version(fixture::text_model());
    assert_eq!(ready.json(), json!({ "ready": true, "model_version": version, "model_digest": digest }));
    server.stop().unwrap();
}

#[test]
fn single_and_batch_predictions_equal_the_models() {
    let server = TestServer::ready(fixture::config(fixture::text_model()));
    let texts = fixture::texts();
    // Compared with the model on the same batch shape: ONNX Runtime's float results may differ
    // in the last bit between a one-row and a many-row batch.
    for i in 0..texts.len() {
        let want = expected(fixture::text_model(), &texts[i..=i]);
        let reply = post_json(&server.url("/predict"), &json!({ "text": texts[i] }));
        assert_eq!((reply.status, reply.json()), (200, want[0].clone()), "text: {:?}", texts[i]);
    }
    let want = expected(fixture::text_model(), &texts);
    let reply = post_json(&server.url("/predict"), &json!({ "texts": texts }));
    assert_eq!((reply.status, reply.json()), (200, json!({ "predictions": want })));
    let keys: Vec<String> = want[0]["probabilities"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["fresh", "rotten"]);
    server.stop().unwrap();
}

#[test]
fn a_batch_of_the_maximum_size_is_served() {
    let server = TestServer::ready(fixture::config(fixture::text_model()));
    let texts: Vec<String> = (0..serve::Limits::default().max_rows).map(|i| fixture::texts()[i % 6].clone()).collect();
    let reply = post_json(&server.url("/predict"), &json!({ "texts": texts }));
    assert_eq!(reply.status, 200);
    // The server predicts in chunks; the labels are those of one whole-batch call.
    let labels: Vec<Value> =
        reply.json()["predictions"].as_array().unwrap().iter().map(|r| r["label"].clone()).collect();
    let want: Vec<Value> = expected(fixture::text_model(), &texts).iter().map(|r| r["label"].clone()).collect();
    assert_eq!(labels, want);
    server.stop().unwrap();
}

#[test]
fn without_class_metadata_probabilities_are_keyed_by_column() {
    let server = TestServer::ready(fixture::config(fixture::unlabelled_model()));
    let texts = fixture::texts();
    let want = expected(fixture::unlabelled_model(), &texts[..1]);
    let reply = post_json(&server.url("/predict"), &json!({ "text": texts[0] }));
    assert_eq!(reply.json(), want[0]);
    let keys: Vec<String> = reply.json()["probabilities"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["0", "1"]);
    server.stop().unwrap();
}

#[test]
fn every_response_names_the_model() {
    let mut config = fixture::config(fixture::text_model());
    config.model_version = Some("2024-06-01.3".to_string());
    let server = TestServer::ready(config);
    let digest = fixture::digest(fixture::text_model());
    let predict = server.url("/predict");
    let replies = [
        get(&server.url("/healthz")),
        get(&server.url("/readyz")),
        get(&server.url("/metrics")),
        get(&server.url("/nowhere")),
        get(&predict),
        post_json(&predict, &json!({ "text": "good" })),
        post(&predict, "application/json", b"{"),
    ];
    for reply in &replies {
        assert_eq!(reply.header("x-model-version"), Some("2024-06-01.3"), "{reply:?}");
        assert_eq!(reply.header("x-model-digest"), Some(digest.as_str()), "{reply:?}");
    }
    assert_eq!(replies[1].json()["model_version"], "2024-06-01.3");
    server.stop().unwrap();
}

/// Sends `body` as `content_type` to `/predict` and checks the status and that the JSON error
/// contains `says`.
pub(crate) fn check(server: &TestServer, content_type: &str, body: &[u8], status: u16, says: &str) {
    let reply = post(&server.url("/predict"), content_type, body);
    let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
    assert_eq!(reply.status, status, "{shown}: {}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"), "{shown}");
    let error = reply.json()["error"].as_str().unwrap_or_else(|| panic!("no error in {}", reply.body)).to_string();
    assert!(error.contains(says), "{shown}: {error:?} does not contain {says:?}");
}

#[test]
fn bad_requests_get_json_errors() {
    let server = TestServer::ready(fixture::config(fixture::text_model()));
    let json = "application/json";
    let forms = r#"expected a JSON object: {"text": "..."}, {"texts": ["...", ...]}, {"features": [x, ...]} or {"instances": [[x, ...], ...]}"#;
    check(&server, json, b"{\"text\": ", 400, "malformed JSON: EOF while parsing");
    check(&server, json, b"not json", 400, "malformed JSON: expected ident");
    check(&server, json, br#"{"txt": "good"}"#, 400, forms);
    check(&server, json, br#"{"texts": "good"}"#, 400, forms);
    check(&server, json, br#"{"texts": []}"#, 400, "`texts` is empty");
    check(&server, "text/plain", br#"{"text": "good"}"#, 415, "Content-Type: application/json");
    check(&server, "application/x-www-form-urlencoded", b"text=good", 415, "Content-Type: application/json");
    let too_many = json!({ "texts": vec!["good"; serve::Limits::default().max_rows + 1] }).to_string();
    check(&server, json, too_many.as_bytes(), 413, "1025 texts in one request; the limit is 1024");
    let too_big = json!({ "text": "a".repeat(serve::Limits::default().max_body_bytes) }).to_string();
    check(&server, json, too_big.as_bytes(), 413, "over the limit of 1048576 bytes");
    server.stop().unwrap();
}

#[test]
fn unknown_paths_and_methods_get_json_errors() {
    let server = TestServer::ready(fixture::config(fixture::text_model()));
    let missing = get(&server.url("/predictions"));
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().unwrap().contains("POST /predict"));
    let wrong = get(&server.url("/predict"));
    assert_eq!(wrong.status, 405);
    assert!(wrong.json()["error"].as_str().unwrap().contains("infer take POST"));
    server.stop().unwrap();
}

/// The value of the sample `name` (metric with labels, exactly as printed), or 0 if absent.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[test]
fn metrics_count_requests_durations_and_labels() {
    let server = TestServer::ready(fixture::config(fixture::text_model()));
    let scrape = || get(&server.url("/metrics")).body;
    let before = scrape();
    let texts = fixture::texts();
    let labels: Vec<String> = expected(fixture::text_model(), &texts).iter().map(|r| r["label"].to_string()).collect();
    let fresh = labels.iter().filter(|l| l.contains("fresh")).count() as f64;
    post_json(&server.url("/predict"), &json!({ "texts": texts }));
    post_json(&server.url("/predict"), &json!({ "text": texts[0] }));
    post(&server.url("/predict"), "application/json", b"{");
    let after = scrape();
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(moved(r#"slipway_requests_total{path="/predict",status="200"}"#), 2.0, "{after}");
    assert_eq!(moved(r#"slipway_requests_total{path="/predict",status="400"}"#), 1.0, "{after}");
    assert_eq!(moved(r#"slipway_requests_total{path="/metrics",status="200"}"#), 1.0, "{after}");
    assert!(moved("slipway_request_duration_seconds_count") >= 4.0, "{after}");
    assert_eq!(
        sample(&after, r#"slipway_request_duration_seconds_bucket{le="+Inf"}"#),
        sample(&after, "slipway_request_duration_seconds_count")
    );
    let first_fresh = if labels[0].contains("fresh") { 1.0 } else { 0.0 };
    assert_eq!(moved(r#"slipway_predictions_total{label="fresh"}"#), fresh + first_fresh, "{after}");
    let (version, digest) = (fixture::default_version(fixture::text_model()), fixture::digest(fixture::text_model()));
    let info = format!(r#"slipway_model_info{{version="{version}",digest="{digest}"}}"#);
    assert_eq!(sample(&after, &info), 1.0, "{after}");
    server.stop().unwrap();
}

#[test]
fn a_missing_model_stops_the_server_with_help() {
    let mut server = TestServer::run(fixture::config(std::path::Path::new("/nowhere/model.onnx")));
    let err = server.join().unwrap_err();
    assert_eq!(err.to_string(), "model file /nowhere/model.onnx does not exist");
    assert_eq!(err.help(), Some("pass the model file with --model or SLIPWAY_MODEL"));
}
