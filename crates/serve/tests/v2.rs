//! The Open Inference Protocol (KServe v2) endpoints: health, metadata and readiness as the
//! protocol has them, `infer` answers equal to `model::Model::predict` for a text and a feature
//! model, protocol errors as `{"error": ...}` with a client status, and a real client of the
//! protocol (`tritonclient`'s HTTP client, from the test tools) getting the model's answers.

use serde_json::{Value, json};

use crate::api::{as_sent, expected_for};
use crate::fixture::{self, TestServer, get, post, post_json};

/// The labels and the flat probabilities `Model::predict` gives for `batch`.
fn truth(model_path: &std::path::Path, batch: model::Batch<'_>) -> (Vec<Value>, Vec<Value>) {
    let want = expected_for(model_path, batch);
    let labels = want.iter().map(|w| w["label"].clone()).collect();
    let probabilities = want
        .iter()
        .flat_map(|w| w["probabilities"].as_object().unwrap().values().cloned().collect::<Vec<_>>())
        .collect();
    (labels, probabilities)
}

#[test]
fn health_metadata_and_readiness_follow_the_protocol() {
    let server = TestServer::ready(fixture::config(fixture::text_model()));
    let version = fixture::default_version(fixture::text_model());
    assert_eq!(get(&server.url("/v2/health/live")).json(), json!({ "live": true }));
    let ready = get(&server.url("/v2/health/ready"));
    assert_eq!((ready.status, ready.json()), (200, json!({ "ready": true })));
    assert_eq!(get(&server.url("/v2")).json()["name"], "slipway-serve");
    let meta = get(&server.url("/v2/models/model"));
    assert_eq!(meta.status, 200, "{}", meta.body);
    assert_eq!(
        meta.json(),
        json!({
            "name": "model",
            "versions": [version],
            "platform": "onnxruntime_onnx",
            "inputs": [{ "name": "text", "datatype": "BYTES", "shape": [-1, 1] }],
            "outputs": [
                { "name": "label", "datatype": "BYTES", "shape": [-1] },
                { "name": "probabilities", "datatype": "FP32", "shape": [-1, 2] },
            ],
        })
    );
    let versioned = get(&server.url(&format!("/v2/models/model/versions/{version}/ready")));
    assert_eq!((versioned.status, versioned.json()["ready"].clone()), (200, json!(true)));
    let unknown = get(&server.url("/v2/models/other"));
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json(), json!({ "error": "unknown model `other`; this server serves `model`" }));
    let old = get(&server.url("/v2/models/model/versions/0/ready"));
    assert_eq!(old.status, 404);
    assert!(old.json()["error"].as_str().unwrap().contains("has no version `0`"), "{}", old.body);
    server.stop().unwrap();
}

#[test]
fn a_loading_server_is_live_but_not_ready() {
    let server = TestServer::serve_only(fixture::config(fixture::text_model()));
    assert_eq!(get(&server.url("/v2/health/live")).status, 200);
    let ready = get(&server.url("/v2/health/ready"));
    assert_eq!((ready.status, ready.json()), (503, json!({ "ready": false })));
    let infer = post_json(&server.url("/v2/models/model/infer"), &json!({ "inputs": [] }));
    assert_eq!(infer.status, 503, "{}", infer.body);
    server.stop().unwrap();
}

#[test]
fn infer_answers_equal_the_models_for_text_and_features() {
    let text = TestServer::ready(fixture::config(fixture::text_model()));
    let texts = fixture::texts();
    let (labels, probabilities) = truth(fixture::text_model(), model::Batch::Texts(&texts));
    let body = json!({
        "id": "r1",
        "inputs": [{ "name": "text", "shape": [texts.len(), 1], "datatype": "BYTES", "data": texts }],
    });
    let reply = post_json(&text.url("/v2/models/model/infer"), &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let version = fixture::default_version(fixture::text_model());
    assert_eq!(
        reply.json(),
        json!({
            "model_name": "model",
            "model_version": version,
            "id": "r1",
            "outputs": [
                { "name": "label", "datatype": "BYTES", "shape": [texts.len()], "data": labels },
                { "name": "probabilities", "datatype": "FP32", "shape": [texts.len(), 2], "data": probabilities },
            ],
        })
    );
    // Only the output asked for, under the versioned path.
    let only = json!({
        "inputs": [{ "name": "text", "shape": [1], "datatype": "BYTES", "data": ["a great film"] }],
        "outputs": [{ "name": "label" }],
    });
    let reply = post_json(&text.url(&format!("/v2/models/model/versions/{version}/infer")), &only);
    let outputs = reply.json()["outputs"].clone();
    assert_eq!(outputs.as_array().map(Vec::len), Some(1), "{}", reply.body);
    assert_eq!(outputs[0]["name"], "label");
    text.stop().unwrap();

    let features = TestServer::ready(fixture::config(fixture::features_model()));
    let rows = fixture::feature_rows();
    let (labels, probabilities) = truth(fixture::features_model(), model::Batch::Features(&rows));
    let nested =
        json!({ "inputs": [{ "name": "features", "shape": [rows.len(), 4], "datatype": "FP32", "data": rows }] });
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let flat =
        json!({ "inputs": [{ "name": "features", "shape": [rows.len(), 4], "datatype": "FP32", "data": flat }] });
    for body in [nested, flat] {
        let reply = post_json(&features.url("/v2/models/model/infer"), &body);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let got = reply.json();
        assert_eq!(got["outputs"][0]["data"], Value::Array(labels.clone()));
        assert_eq!(got["outputs"][1]["data"], Value::Array(probabilities.clone()));
        assert_eq!(got["outputs"][1]["shape"], json!([rows.len(), 2]));
    }
    let meta = get(&features.url("/v2/models/model")).json();
    assert_eq!(meta["inputs"], json!([{ "name": "features", "datatype": "FP32", "shape": [-1, 4] }]));
    features.stop().unwrap();
}

/// POSTs `body` to the features model's `infer` and checks the status and the error's words.
fn refused(server: &TestServer, body: &[u8], status: u16, says: &str) {
    let reply = post(&server.url("/v2/models/model/infer"), "application/json", body);
    let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
    assert_eq!(reply.status, status, "{shown}: {}", reply.body);
    let error = reply.json()["error"].as_str().unwrap_or_else(|| panic!("no error in {}", reply.body)).to_string();
    assert!(error.contains(says), "{shown}: {error:?} does not contain {says:?}");
}

#[test]
fn bad_infer_requests_get_protocol_errors() {
    let server = TestServer::ready(fixture::config(fixture::features_model()));
    let input = |name: &str, shape: Value, datatype: &str, data: Value| {
        json!({ "inputs": [{ "name": name, "shape": shape, "datatype": datatype, "data": data }] }).to_string()
    };
    let row = json!([[1, 2, 3, 4]]);
    refused(
        &server,
        input("x", json!([1, 4]), "FP32", row.clone()).as_bytes(),
        400,
        "unknown input `x`; the model's input is `features`",
    );
    refused(
        &server,
        input("features", json!([1, 4]), "FP64", row.clone()).as_bytes(),
        400,
        "input `features` is FP32; the request sends FP64",
    );
    refused(
        &server,
        input("features", json!([2, 4]), "FP32", json!([1, 2, 3, 4])).as_bytes(),
        400,
        "holds 8 values; its data has 4",
    );
    refused(
        &server,
        input("features", json!([2, 4]), "FP32", row.clone()).as_bytes(),
        400,
        "nested as its shape [2, 4]",
    );
    refused(
        &server,
        input("features", json!([2, 2]), "FP32", json!([[1, 2, 3], [4]])).as_bytes(),
        400,
        "nested as its shape [2, 2]",
    );
    refused(
        &server,
        input("features", json!([1, 3]), "FP32", json!([1, 2, 3])).as_bytes(),
        400,
        "takes 4 features per row",
    );
    refused(&server, input("features", json!([4]), "FP32", json!([1, 2, 3, 4])).as_bytes(), 400, "send [N, features]");
    refused(
        &server,
        input("features", json!([1, -4]), "FP32", row.clone()).as_bytes(),
        400,
        "every dimension must be 0 or more",
    );
    refused(
        &server,
        input("features", json!([1, 4]), "FP32", json!([[1, "2", 3, 4]])).as_bytes(),
        400,
        "features[1] is a string",
    );
    refused(
        &server,
        input("features", json!([1, 4]), "FP32", json!([[1, null, 3, 4]])).as_bytes(),
        400,
        "features[1] is null",
    );
    refused(&server, input("features", json!([0, 4]), "FP32", json!([])).as_bytes(), 400, "send at least one row");
    let many = serve::Limits::default().max_rows + 1;
    refused(
        &server,
        input("features", json!([many, 4]), "FP32", json!([])).as_bytes(),
        413,
        "1025 rows in one request",
    );
    refused(&server, br#"{"inputs": "x"}"#, 400, "not an inference request");
    refused(&server, b"not json", 400, "not an inference request");
    let two = json!({ "inputs": [
        { "name": "features", "shape": [1, 4], "datatype": "FP32", "data": row },
        { "name": "features", "shape": [1, 4], "datatype": "FP32", "data": row },
    ] });
    refused(&server, two.to_string().as_bytes(), 400, "the model takes one input, `features`; the request has 2");
    let unknown_output = json!({
        "inputs": [{ "name": "features", "shape": [1, 4], "datatype": "FP32", "data": row }],
        "outputs": [{ "name": "scores" }],
    });
    refused(
        &server,
        unknown_output.to_string().as_bytes(),
        400,
        "unknown output `scores`; the model's outputs are `label` and `probabilities`",
    );
    // The binary extension with a header that lies about the JSON part's length.
    let reply = fixture::post_with(
        &server.url("/v2/models/model/infer"),
        &[("content-type", "application/octet-stream"), ("inference-header-content-length", "99999")],
        b"{}",
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    let wrong_model = post_json(&server.url("/v2/models/other/infer"), &json!({ "inputs": [] }));
    assert_eq!(wrong_model.status, 404);
    server.stop().unwrap();
}

/// Runs `tests/oip_client.py` (tritonclient's HTTP client) against `server` with `rows`.
fn protocol_client(server: &TestServer, rows: &Value) -> Value {
    let script = fixture::root().join("crates/serve/tests/oip_client.py");
    let python = fixture::tools_python();
    let (url, rows) = (server.addr.to_string(), rows.to_string());
    let sh = xshell::Shell::new().unwrap();
    let out = xshell::cmd!(sh, "{python} {script} {url} model {rows}").quiet().read().unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("the client printed no JSON ({e}): {out}"))
}

#[test]
fn a_real_protocol_client_gets_the_models_answers() {
    for (model_path, rows) in
        [(fixture::text_model(), json!(fixture::texts())), (fixture::features_model(), json!(fixture::feature_rows()))]
    {
        let server = TestServer::ready(fixture::config(model_path));
        let got = protocol_client(&server, &rows);
        let (labels, probabilities) = match &rows {
            Value::Array(r) if r[0].is_string() => {
                truth(model_path, model::Batch::Texts(&serde_json::from_value::<Vec<String>>(rows.clone()).unwrap()))
            }
            _ => truth(
                model_path,
                model::Batch::Features(&serde_json::from_value::<Vec<Vec<f32>>>(rows.clone()).unwrap()),
            ),
        };
        assert_eq!((&got["live"], &got["ready"], &got["model_ready"]), (&json!(true), &json!(true), &json!(true)));
        assert_eq!(got["metadata"]["name"], "model");
        for form in ["json", "binary"] {
            let result = &got["results"][form];
            assert_eq!(result["labels"], Value::Array(labels.clone()), "{form}: {got}");
            let flat: Vec<Value> = result["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|p| as_sent(p.as_f64().unwrap() as f32)))
                .collect();
            assert_eq!(flat, probabilities, "{form}");
            assert_eq!(result["id"], "req-1");
        }
        assert_eq!(got["errors"]["wrong_input"]["status"], "400", "{got}");
        assert!(got["errors"]["wrong_input"]["message"].as_str().unwrap().contains("unknown input"), "{got}");
        assert_eq!(got["errors"]["unknown_model"]["status"], "404", "{got}");
        server.stop().unwrap();
    }
}
