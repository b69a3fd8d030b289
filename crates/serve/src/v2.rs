//! The Open Inference Protocol (KServe's "v2" protocol, also spoken by Triton and MLServer),
//! over HTTP/REST: health, server and model metadata, readiness, and `infer` with JSON tensors
//! — `BYTES` for a text model, `FP32` for a feature model — or with the protocol's binary tensor
//! extension for the input (what `tritonclient` sends by default). Answers are always JSON.
//! Errors are `{"error": "..."}`, as the protocol has them.
//!
//! An `infer` request is held to the same limits as `/predict` (rows, text length, features
//! per row, body size, the admission slots) and predicted by the same code.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::admit::{AdmittedBody, admit};
use crate::app::App;
use crate::limits::Limits;
use crate::load::Loaded;
use crate::predict::{self, ApiError, Rows, json};

/// The protocol's routes, for the model under any of its paths (with or without a version).
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{version}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer))
}

/// The header of the binary tensor extension: the length of the JSON part of the body.
const HEADER_LENGTH: &str = "inference-header-content-length";

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// `GET /v2`.
async fn server_metadata() -> Response {
    let body = serde_json::json!({
        "name": "slipway-serve",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    });
    json(StatusCode::OK, &body)
}

/// `GET /v2/health/live`: the process answers.
async fn live() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "live": true }))
}

/// `GET /v2/health/ready`: 200 once the model serves, 503 before or after a failed load.
async fn ready(State(app): State<App>) -> Response {
    let ready = app.loaded().is_some();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, &serde_json::json!({ "ready": ready }))
}

/// The model a path names, if it is this server's (and its version, if the path gives one).
fn model_for(app: &App, params: &BTreeMap<String, String>) -> Result<Arc<Loaded>, ApiError> {
    let name = params.get("name").map(String::as_str).unwrap_or_default();
    if name != app.model_name() {
        let msg = format!("unknown model `{name}`; this server serves `{}`", app.model_name());
        return Err(ApiError::new(StatusCode::NOT_FOUND, msg));
    }
    let loaded = predict::loaded(app)?;
    if let Some(version) = params.get("version").filter(|v| *v != loaded.version()) {
        let msg = format!("model `{name}` has no version `{version}`; it serves version `{}`", loaded.version());
        return Err(ApiError::new(StatusCode::NOT_FOUND, msg));
    }
    Ok(loaded)
}

/// `GET /v2/models/{name}[/versions/{version}]`: the inputs and outputs with their datatypes
/// and shapes.
async fn model_metadata(
    State(app): State<App>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let loaded = model_for(&app, &params)?;
    let tensors = &loaded.model().signature().tensors;
    let meta = |t: &model::TensorMeta| serde_json::json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape });
    let outputs: Vec<_> = std::iter::once(&tensors.label).chain(&tensors.probabilities).map(meta).collect();
    let body = serde_json::json!({
        "name": app.model_name(),
        "versions": [loaded.version()],
        "platform": "onnxruntime_onnx",
        "inputs": [meta(&tensors.input)],
        "outputs": outputs,
    });
    Ok(json(StatusCode::OK, &body))
}

/// `GET /v2/models/{name}[/versions/{version}]/ready`.
async fn model_ready(
    State(app): State<App>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let loaded = model_for(&app, &params)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "name": app.model_name(), "ready": true, "version": loaded.version() }),
    ))
}

#[derive(Debug, Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted as the protocol allows; no parameter changes the answer")]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
    inputs: Vec<InferInput>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize)]
struct InferInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RequestedOutput {
    name: String,
}

/// The body of an `infer` request: JSON, or the binary extension's JSON header followed by
/// tensor bytes (`application/octet-stream`).
struct InferBody(AdmittedBody);

impl FromRequest<App> for InferBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        Ok(InferBody(admit(req, app, content_type_ok).await?))
    }
}

/// JSON, the binary extension's octet stream, or no content type at all (some clients of the
/// protocol send none).
fn content_type_ok(value: Option<&header::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else { return value.is_none() };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json") || essence.eq_ignore_ascii_case("application/octet-stream")
}

/// `POST /v2/models/{name}[/versions/{version}]/infer`.
async fn infer(
    State(app): State<App>,
    Path(params): Path<BTreeMap<String, String>>,
    body: InferBody,
) -> Result<Response, ApiError> {
    let loaded = model_for(&app, &params)?;
    let signature = loaded.model().signature();
    let (request, binary) = split(&body.0)?;
    let wanted = outputs_wanted(signature, request.outputs.as_deref())?;
    let [input] = request.inputs.as_slice() else {
        return Err(bad(format!(
            "the model takes one input, `{}`; the request has {}",
            signature.input,
            request.inputs.len()
        )));
    };
    let rows = rows_of(input, binary, signature, app.limits())?;
    predict::check_rows(&rows, app.limits())?;
    rows.fit(signature).map_err(|e| bad(e.message))?;
    let n = rows.len();
    let answers = predict::predict(&app, loaded.clone(), rows).await?;
    app.metrics().predicted(answers.iter().map(|r| &r.label));
    let tensors = &signature.tensors;
    let mut outputs = Vec::new();
    if wanted.0 {
        let data = match tensors.label.datatype {
            "INT64" => {
                answers.iter().map(|a| a.label.parse::<i64>().map(serde_json::Value::from)).collect::<Result<_, _>>()
            }
            _ => Ok(answers.iter().map(|a| serde_json::Value::from(a.label.as_str())).collect()),
        }
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the model's INT64 label was not an integer"))?;
        let datatype = if tensors.label.datatype == "INT64" { "INT64" } else { "BYTES" };
        outputs.push(Output { name: &tensors.label.name, datatype, shape: vec![n], data: Data::Json(data) });
    }
    if let (true, Some(meta)) = (wanted.1, &tensors.probabilities) {
        let k = answers.first().map_or(0, |a| a.probabilities.len());
        let data: Vec<f32> = answers.iter().flat_map(|a| a.probabilities.iter().map(|(_, p)| *p)).collect();
        outputs.push(Output { name: &meta.name, datatype: "FP32", shape: vec![n, k], data: Data::Floats(data) });
    }
    let answer = InferAnswer {
        model_name: app.model_name(),
        model_version: loaded.version(),
        id: request.id.as_deref(),
        outputs,
    };
    Ok(json(StatusCode::OK, &answer))
}

/// Which of the label and the probabilities to answer: those requested, else both.
fn outputs_wanted(
    signature: &model::Signature,
    requested: Option<&[RequestedOutput]>,
) -> Result<(bool, bool), ApiError> {
    let Some(requested) = requested.filter(|r| !r.is_empty()) else { return Ok((true, true)) };
    let mut wanted = (false, false);
    for output in requested {
        if output.name == signature.label {
            wanted.0 = true;
        } else if signature.probabilities.as_deref() == Some(output.name.as_str()) {
            wanted.1 = true;
        } else {
            let names: Vec<&str> =
                std::iter::once(signature.label.as_str()).chain(signature.probabilities.as_deref()).collect();
            return Err(bad(format!("unknown output `{}`; the model's outputs are {}", output.name, quoted(&names))));
        }
    }
    Ok(wanted)
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" and ")
}

/// The request's JSON part, and the bytes after it when the binary extension is used.
fn split(body: &AdmittedBody) -> Result<(InferRequest, &[u8]), ApiError> {
    let (json_part, binary) = match body.headers.get(HEADER_LENGTH) {
        None => (&body.body[..], &[][..]),
        Some(value) => {
            let length =
                value.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|l| *l <= body.body.len());
            let Some(length) = length else {
                return Err(bad(format!(
                    "the {HEADER_LENGTH} header is not a length within the body's {} bytes",
                    body.body.len()
                )));
            };
            body.body.split_at(length)
        }
    };
    let request: InferRequest = serde_json::from_slice(json_part).map_err(|e| {
        bad(format!(
            r#"not an inference request ({e}); expected {{"inputs": [{{"name", "shape", "datatype", "data"}}]}}"#
        ))
    })?;
    Ok((request, binary))
}

/// The rows of the one input, after its name, datatype, shape and data are held to the model.
fn rows_of(input: &InferInput, binary: &[u8], signature: &model::Signature, limits: &Limits) -> Result<Rows, ApiError> {
    let meta = &signature.tensors.input;
    if input.name != meta.name {
        return Err(bad(format!(
            "unknown input `{}`; the model's input is `{}` ({}, shape {:?})",
            input.name, meta.name, meta.datatype, meta.shape
        )));
    }
    let text = matches!(signature.kind, model::InputKind::Text);
    let want = if text { "BYTES" } else { "FP32" };
    if input.datatype != want {
        return Err(bad(format!("input `{}` is {want}; the request sends {}", input.name, input.datatype)));
    }
    let shape: Vec<usize> =
        input.shape.iter().map(|&d| usize::try_from(d)).collect::<Result<_, _>>().map_err(|_| {
            bad(format!("the shape of `{}` is {:?}; every dimension must be 0 or more", input.name, input.shape))
        })?;
    let (n, width) = match (text, shape.as_slice()) {
        (true, [n] | [n, 1]) => (*n, 1),
        (false, [n, w]) => (*n, *w),
        _ => {
            let expect = if text { "[N] or [N, 1]" } else { "[N, features]" };
            return Err(bad(format!("the shape of `{}` is {:?}; send {expect}", input.name, input.shape)));
        }
    };
    if n == 0 || width == 0 {
        return Err(bad(format!(
            "the shape of `{}` is {:?}; send at least one row of at least one value",
            input.name, input.shape
        )));
    }
    if n > limits.max_rows {
        let msg = format!("{n} rows in one request; the limit is {}", limits.max_rows);
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, msg));
    }
    if width > limits.max_features {
        let msg = format!("{width} features per row; the limit is {}", limits.max_features);
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, msg));
    }
    let count = n * width;
    let binary_size = input.parameters.as_ref().and_then(|p| p.get("binary_data_size"));
    match (binary_size, &input.data) {
        (Some(size), None) => {
            let size = size.as_u64().and_then(|s| usize::try_from(s).ok()).filter(|s| *s == binary.len());
            let Some(_) = size else {
                return Err(bad(format!(
                    "binary_data_size of `{}` must be the {} bytes after the JSON header",
                    input.name,
                    binary.len()
                )));
            };
            if text {
                binary_texts(binary, count, n).map(Rows::Texts)
            } else {
                binary_floats(binary, count, width).map(Rows::Features)
            }
        }
        (None, Some(_)) if !binary.is_empty() => Err(bad(format!(
            "{} bytes follow the JSON header, but `{}` sends its data as JSON; send one or the other",
            binary.len(),
            input.name
        ))),
        (None, Some(data)) => {
            let flat = flatten(data, &shape, &input.name)?;
            if flat.len() != count {
                return Err(bad(format!(
                    "`{}` has shape {:?}, which holds {count} values; its data has {}",
                    input.name,
                    input.shape,
                    flat.len()
                )));
            }
            if text {
                let texts = flat
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        serde_json::Value::String(s) => Ok(s.clone()),
                        other => Err(bad(format!("{}[{i}] is {}, not a string", input.name, predict::kind_of(other)))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Rows::Texts(texts))
            } else {
                let values = flat
                    .iter()
                    .enumerate()
                    .map(|(i, v)| predict::feature(&format!("{}[{i}]", input.name), v))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Rows::Features(values.chunks(width.max(1)).map(<[f32]>::to_vec).collect()))
            }
        }
        (Some(_), Some(_)) => Err(bad(format!("`{}` has both data and binary_data_size; send one", input.name))),
        (None, None) => Err(bad(format!("`{}` has no data", input.name))),
    }
}

/// The values of a tensor's `data`, flat in row-major order. The protocol allows a flat list,
/// or lists nested exactly as the shape says: every level as long as its dimension, so that
/// `[[1, 2, 3], [4]]` is not taken for two rows of two.
fn flatten<'a>(
    data: &'a serde_json::Value,
    shape: &[usize],
    name: &str,
) -> Result<Vec<&'a serde_json::Value>, ApiError> {
    fn nested<'a>(v: &'a serde_json::Value, shape: &[usize], out: &mut Vec<&'a serde_json::Value>) -> bool {
        match (v, shape.split_first()) {
            (serde_json::Value::Array(items), Some((dim, rest))) => {
                items.len() == *dim && items.iter().all(|i| nested(i, rest, out))
            }
            (serde_json::Value::Array(_), None) => false,
            (_, Some(_)) => false,
            (other, None) => {
                out.push(other);
                true
            }
        }
    }
    let serde_json::Value::Array(items) = data else {
        return Err(bad(format!("the data of `{name}` is {}, not a list", predict::kind_of(data))));
    };
    if items.iter().all(|i| !i.is_array()) {
        return Ok(items.iter().collect());
    }
    let mut out = Vec::new();
    match nested(data, shape, &mut out) {
        true => Ok(out),
        false => {
            Err(bad(format!("the data of `{name}` is neither a flat list nor lists nested as its shape {shape:?}")))
        }
    }
}

/// `BYTES` elements of the binary extension: each a 4-byte little-endian length, then the bytes.
fn binary_texts(mut bytes: &[u8], count: usize, rows: usize) -> Result<Vec<String>, ApiError> {
    let mut texts = Vec::with_capacity(count.min(rows));
    for i in 0..count {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(bad(format!("the binary data ends before element {i} of {count}")));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(bad(format!("element {i} of the binary data claims {len} bytes; {} are left", rest.len())));
        }
        let (text, rest) = rest.split_at(len);
        texts.push(String::from_utf8(text.to_vec()).map_err(|_| bad(format!("element {i} is not UTF-8 text")))?);
        bytes = rest;
    }
    if !bytes.is_empty() {
        return Err(bad(format!("{} bytes of binary data are left after {count} elements", bytes.len())));
    }
    Ok(texts)
}

/// `FP32` elements of the binary extension: little-endian floats, each finite.
fn binary_floats(bytes: &[u8], count: usize, width: usize) -> Result<Vec<Vec<f32>>, ApiError> {
    if bytes.len() != count * 4 {
        return Err(bad(format!("{count} FP32 values take {} bytes; the binary data has {}", count * 4, bytes.len())));
    }
    let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if let Some(i) = values.iter().position(|x| !x.is_finite()) {
        return Err(bad(format!("value {i} of the binary data is {}, not a finite number", values[i])));
    }
    Ok(values.chunks(width.max(1)).map(<[f32]>::to_vec).collect())
}

/// An `infer` answer. Floats are written as f32, not widened to f64.
#[derive(serde::Serialize)]
struct InferAnswer<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<Output<'a>>,
}

#[derive(serde::Serialize)]
struct Output<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: Vec<usize>,
    data: Data,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Data {
    Json(Vec<serde_json::Value>),
    Floats(Vec<f32>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_bytes_elements_are_length_prefixed() {
        let mut bytes = Vec::new();
        for t in ["good", "", "café"] {
            bytes.extend((t.len() as u32).to_le_bytes());
            bytes.extend(t.as_bytes());
        }
        assert_eq!(binary_texts(&bytes, 3, 3).unwrap(), ["good", "", "café"]);
        assert!(binary_texts(&bytes, 4, 4).unwrap_err().message.contains("ends before element 3"));
        assert!(binary_texts(&bytes, 2, 2).unwrap_err().message.contains("left after 2 elements"));
        let lying = [255u8, 255, 255, 255, b'a'];
        assert!(binary_texts(&lying, 1, 1).unwrap_err().message.contains("claims 4294967295 bytes"));
    }

    #[test]
    fn binary_floats_are_little_endian_and_finite() {
        let bytes: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(binary_floats(&bytes, 4, 2).unwrap(), [vec![1.5, -2.0], vec![0.25, 8.0]]);
        assert!(binary_floats(&bytes[..15], 4, 2).is_err());
        let nan: Vec<u8> = [1.0f32, f32::NAN].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert!(binary_floats(&nan, 2, 2).unwrap_err().message.contains("not a finite number"));
    }

    #[test]
    fn data_is_flat_or_nested_exactly_as_the_shape() {
        let nested = serde_json::json!([[1, 2], [3, 4]]);
        assert_eq!(flatten(&nested, &[2, 2], "x").unwrap().len(), 4);
        assert_eq!(flatten(&serde_json::json!([1, 2, 3, 4]), &[2, 2], "x").unwrap().len(), 4);
        assert_eq!(flatten(&serde_json::json!([["a"], ["b"]]), &[2, 1], "x").unwrap().len(), 2);
        for bad in [
            serde_json::json!([[1, 2, 3], [4]]),
            serde_json::json!([[1, 2], 3, 4]),
            serde_json::json!([[[1, 2]], [[3, 4]]]),
            serde_json::json!([[1, 2], [3, 4], [5, 6]]),
        ] {
            assert!(flatten(&bad, &[2, 2], "x").is_err(), "{bad}");
        }
        assert!(flatten(&serde_json::json!(1), &[2, 2], "x").is_err());
    }
}
