//! A model over feature rows: `{"features": [...]}` and `{"instances": [[...], ...]}` answered
//! as the model predicts them, and every bad row refused with a clear client error.

use serde_json::json;

use crate::api::{check, expected_for};
use crate::fixture::{self, TestServer, post_json};

#[test]
fn feature_rows_are_predicted_as_the_model_does() {
    let server = TestServer::ready(fixture::config(fixture::features_model()));
    let rows = fixture::feature_rows();
    for row in &rows {
        let want = expected_for(fixture::features_model(), model::Batch::Features(std::slice::from_ref(row)));
        let reply = post_json(&server.url("/predict"), &json!({ "features": row }));
        assert_eq!((reply.status, reply.json()), (200, want[0].clone()), "row {row:?}");
    }
    let want = expected_for(fixture::features_model(), model::Batch::Features(&rows));
    let reply = post_json(&server.url("/predict"), &json!({ "instances": rows }));
    assert_eq!((reply.status, reply.json()), (200, json!({ "predictions": want })));
    let labels: Vec<&str> = want.iter().map(|w| w["label"].as_str().unwrap()).collect();
    assert!(labels.contains(&"a") && labels.contains(&"b"), "both classes among {labels:?}");
    server.stop().unwrap();
}

#[test]
fn bad_feature_rows_get_clear_errors_never_a_server_error() {
    let server = TestServer::ready(fixture::config(fixture::features_model()));
    let json = "application/json";
    check(
        &server,
        json,
        br#"{"features": [1, 2, 3]}"#,
        422,
        "the model takes 4 features per row (its input `features`); the request has 3",
    );
    check(&server, json, br#"{"instances": [[1, 2, 3, 4, 5]]}"#, 422, "takes 4 features per row");
    check(&server, json, br#"{"features": [1, "2", 3, 4]}"#, 400, "features[1] is a string, not a number");
    check(&server, json, br#"{"features": [1, NaN, 3, 4]}"#, 400, "malformed JSON");
    check(&server, json, br#"{"features": [1, 1e39, 3, 4]}"#, 400, "features[1] is 1e+39, beyond the range of float32");
    check(&server, json, br#"{"instances": [[1, 2, 3, 4], [1, 2, 3]]}"#, 400, "row 1 has 3 features; row 0 has 4");
    check(&server, json, br#"{"text": "a good film"}"#, 422, "not text; send {\"features\"");
    let too_many =
        json!({ "instances": vec![[0.5, 0.5, 0.5, 0.5]; serve::Limits::default().max_rows + 1] }).to_string();
    check(&server, json, too_many.as_bytes(), 413, "1025 rows in one request; the limit is 1024");
    // Still serving after all of that.
    let reply = post_json(&server.url("/predict"), &json!({ "features": [0.5, 0.5, 0.5, 0.5] }));
    assert_eq!(reply.status, 200, "{}", reply.body);
    server.stop().unwrap();
}

#[test]
fn a_text_model_refuses_feature_rows_with_what_to_send() {
    let server = TestServer::ready(fixture::config(fixture::text_model()));
    check(
        &server,
        "application/json",
        br#"{"features": [1, 2]}"#,
        422,
        "the model takes text (its input `text`), not features; send {\"text\"",
    );
    server.stop().unwrap();
}
