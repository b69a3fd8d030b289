//! `/predict`: the request forms, their validation into JSON errors with the right status, and
//! the prediction itself, run on tokio's blocking pool.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::app::App;
use crate::load::Loaded;
use crate::{MAX_BODY_BYTES, MAX_TEXTS};

/// Rows per ONNX Runtime call.
const PREDICT_CHUNK: usize = 256;

const FORMS: &str = r#"expected a JSON object {"text": "..."} or {"texts": ["...", ...]}"#;

/// An error answered as `{"error": "..."}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json(self.status, &serde_json::json!({ "error": self.message }))
    }
}

/// A JSON answer. axum's `Json` would pull in its `json` feature for this one line.
pub(crate) fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write the answer: {e}")).into_response(),
    }
}

/// The two accepted bodies, told apart by their one field.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub(crate) enum PredictRequest {
    Single(Single),
    Batch(Batch),
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Single {
    text: String,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Batch {
    texts: Vec<String>,
}

impl PredictRequest {
    /// Parses and checks a body, with the error a client should see.
    pub(crate) fn parse(body: &[u8]) -> Result<PredictRequest, ApiError> {
        let neither = || ApiError::new(StatusCode::BAD_REQUEST, FORMS);
        // Through an object first: serde would otherwise take `["a"]` for `{"text": "a"}`.
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| match e.classify() {
                serde_json::error::Category::Data => neither(),
                _ => ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
            })?;
        let request = PredictRequest::deserialize(serde_json::Value::Object(object)).map_err(|_| neither())?;
        if let PredictRequest::Batch(Batch { texts }) = &request {
            if texts.is_empty() {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "`texts` is empty; send at least one text"));
            }
            if texts.len() > MAX_TEXTS {
                let msg = format!("{} texts in one request; the limit is {MAX_TEXTS}", texts.len());
                return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, msg));
            }
        }
        Ok(request)
    }
}

/// The body extractor: JSON content type, at most [`MAX_BODY_BYTES`], one of the two forms.
impl<S: Send + Sync> FromRequest<S> for PredictRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as Content-Type: application/json",
            ));
        }
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            match status {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::new(status, format!("the body is over the limit of {MAX_BODY_BYTES} bytes"))
                }
                _ => ApiError::new(status, format!("cannot read the body: {}", rejection.body_text())),
            }
        })?;
        PredictRequest::parse(&body)
    }
}

/// `application/json`, with or without parameters such as `charset`.
fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// One row's answer: its label and its probabilities keyed by class, in column order.
pub(crate) struct RowAnswer {
    label: String,
    probabilities: Vec<(String, f32)>,
}

impl Serialize for RowAnswer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Probabilities<'a>(&'a [(String, f32)]);
        impl Serialize for Probabilities<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
            }
        }
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("label", &self.label)?;
        map.serialize_entry("probabilities", &Probabilities(&self.probabilities))?;
        map.end()
    }
}

/// `POST /predict`.
pub(crate) async fn handler(State(app): State<App>, request: PredictRequest) -> Result<Response, ApiError> {
    let loaded = app.loaded().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model is not loaded yet; poll /readyz until it answers 200")
    })?;
    let (texts, single) = match request {
        PredictRequest::Single(Single { text }) => (vec![text], true),
        PredictRequest::Batch(Batch { texts }) => (texts, false),
    };
    let rows = predict(&app, loaded, texts).await?;
    app.metrics().predicted(rows.iter().map(|r| &r.label));
    Ok(if single {
        json(StatusCode::OK, &rows[0])
    } else {
        // Serialized directly, not through `json!`, which would widen each f32 to an f64 and
        // print 0.8580700159072876 for 0.85807.
        #[derive(serde::Serialize)]
        struct Predictions<'a> {
            predictions: &'a [RowAnswer],
        }
        json(StatusCode::OK, &Predictions { predictions: &rows })
    })
}

/// Runs the model on the blocking pool, at most one prediction per session at a time.
async fn predict(app: &App, loaded: Arc<Loaded>, texts: Vec<String>) -> Result<Vec<RowAnswer>, ApiError> {
    let failed = |message: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message);
    let permit = app.permits().acquire_owned().await.map_err(|e| failed(e.to_string()))?;
    let rows = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut rows = Vec::with_capacity(texts.len());
        // TF-IDF in ONNX is dense (rows × vocabulary): chunks keep a 1,024-text request's
        // memory to a quarter, as the gate does when it judges the model.
        for chunk in texts.chunks(PREDICT_CHUNK) {
            let prediction = loaded.model().predict(model::Batch::Texts(chunk))?;
            rows.extend(answers(&loaded, prediction));
        }
        Ok::<_, model::ModelError>(rows)
    })
    .await
    .map_err(|_| failed("the prediction panicked".to_string()))?;
    rows.map_err(|e| failed(e.to_string()))
}

fn answers(loaded: &Loaded, prediction: model::Prediction) -> Vec<RowAnswer> {
    let mut probabilities = prediction.probabilities.unwrap_or_default().into_iter();
    let row = |label, probs: Vec<f32>| RowAnswer {
        label,
        probabilities: probs.into_iter().enumerate().map(|(i, p)| (loaded.class_name(i), p)).collect(),
    };
    prediction.labels.into_iter().map(|label| row(label, probabilities.next().unwrap_or_default())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `body` and prints the outcome: the request, or the status and message.
    fn check(body: &str, expect: &str) {
        let got = match PredictRequest::parse(body.as_bytes()) {
            Ok(request) => format!("{request:?}"),
            Err(e) => format!("{} {}", e.status.as_u16(), e.message),
        };
        assert_eq!(got, expect, "body: {body}");
    }

    #[test]
    fn request_forms() {
        check(r#"{"text": "good film"}"#, r#"Single(Single { text: "good film" })"#);
        check(r#"{"texts": ["a", "b"]}"#, r#"Batch(Batch { texts: ["a", "b"] })"#);
        check(r#"{"text": ""}"#, r#"Single(Single { text: "" })"#);
    }

    #[test]
    fn bodies_of_neither_form_name_both_forms() {
        let neither = format!("400 {FORMS}");
        for body in [r#"{}"#, r#"{"text": 1}"#, r#"{"texts": "a"}"#, r#"{"texts": [1]}"#, r#"["a"]"#, r#""a""#] {
            check(body, &neither);
        }
        check(r#"{"text": "a", "texts": ["b"]}"#, &neither);
        check(r#"{"text": "a", "extra": 1}"#, &neither);
    }

    #[test]
    fn malformed_json_says_where() {
        check(r#"{"text": "#, "400 malformed JSON: EOF while parsing a value at line 1 column 9");
        check(r#"{"text": "a"} x"#, "400 malformed JSON: trailing characters at line 1 column 15");
        check("", "400 malformed JSON: EOF while parsing a value at line 1 column 0");
    }

    #[test]
    fn batch_size_limits() {
        check(r#"{"texts": []}"#, "400 `texts` is empty; send at least one text");
        let over = serde_json::json!({ "texts": vec!["x"; MAX_TEXTS + 1] }).to_string();
        check(&over, "413 1025 texts in one request; the limit is 1024");
        let at = serde_json::json!({ "texts": vec!["x"; MAX_TEXTS] }).to_string();
        assert!(PredictRequest::parse(at.as_bytes()).is_ok());
    }

    #[test]
    fn content_types() {
        let ok = |v: &str| is_json(Some(&header::HeaderValue::from_str(v).unwrap()));
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(!is_json(None));
    }
}
