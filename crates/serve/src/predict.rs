//! `/predict`: the request forms, their validation into JSON errors with the right status, and
//! the prediction itself, run on tokio's blocking pool in calls of bounded work.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::app::App;
use crate::limits::{Limits, RETRY_AFTER_SECONDS, chunks};
use crate::load::Loaded;

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
        let mut response = json(self.status, &serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
        }
        response
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
    /// Parses and checks a body against `limits`, with the error a client should see.
    pub(crate) fn parse(body: &[u8], limits: &Limits) -> Result<PredictRequest, ApiError> {
        let neither = || ApiError::new(StatusCode::BAD_REQUEST, FORMS);
        // Through an object first: serde would otherwise take `["a"]` for `{"text": "a"}`.
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| match e.classify() {
                serde_json::error::Category::Data => neither(),
                _ => ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
            })?;
        let request = PredictRequest::deserialize(serde_json::Value::Object(object)).map_err(|_| neither())?;
        let texts = match &request {
            PredictRequest::Single(Single { text }) => std::slice::from_ref(text),
            PredictRequest::Batch(Batch { texts }) => texts.as_slice(),
        };
        if texts.is_empty() {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "`texts` is empty; send at least one text"));
        }
        if texts.len() > limits.max_rows {
            let msg = format!("{} texts in one request; the limit is {}", texts.len(), limits.max_rows);
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, msg));
        }
        if let Some((i, n)) =
            texts.iter().map(|t| t.chars().count()).enumerate().find(|(_, n)| *n > limits.max_text_chars)
        {
            let msg = format!(
                "text {i} is {n} characters long; the limit is {} (the server's --max-text-chars)",
                limits.max_text_chars
            );
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, msg));
        }
        Ok(request)
    }
}

/// A request admitted to `/predict`: its slot among the requests the server takes at once is
/// held until the answer is written.
pub(crate) struct Admitted {
    request: PredictRequest,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// The body extractor: a slot (503 with `Retry-After` when every slot is taken, before a byte
/// of the body is read), a JSON content type, the body within the size limit and the time
/// limit (408), then one of the two forms within the limits.
impl FromRequest<App> for Admitted {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        let slot = app.admission().try_acquire_owned().map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is busy; retry after the Retry-After seconds")
        })?;
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as Content-Type: application/json",
            ));
        }
        let limits = app.limits();
        let read = tokio::time::timeout(limits.body_timeout, Bytes::from_request(req, app));
        let body = read
            .await
            .map_err(|_| {
                let msg = format!("the body did not arrive within {:?}", limits.body_timeout);
                ApiError::new(StatusCode::REQUEST_TIMEOUT, msg)
            })?
            .map_err(|rejection| {
                let status = rejection.status();
                match status {
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        ApiError::new(status, format!("the body is over the limit of {} bytes", limits.max_body_bytes))
                    }
                    _ => ApiError::new(status, format!("cannot read the body: {}", rejection.body_text())),
                }
            })?;
        Ok(Admitted { request: PredictRequest::parse(&body, limits)?, _slot: slot })
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
pub(crate) async fn handler(State(app): State<App>, admitted: Admitted) -> Result<Response, ApiError> {
    let request = admitted.request;
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

/// Runs the model, at most one prediction per session at a time, in calls whose padded size
/// stays within the budget; answers come back in the request's order. A small request runs here
/// on the async worker if a session is free at once (see [`Limits::inline_budget`]); the rest
/// run on the blocking pool.
async fn predict(app: &App, loaded: Arc<Loaded>, texts: Vec<String>) -> Result<Vec<RowAnswer>, ApiError> {
    let failed = |message: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message);
    let limits = app.limits().clone();
    let lengths: Vec<usize> = texts.iter().map(|t| t.chars().count()).collect();
    let padded = texts.len() * lengths.iter().copied().max().unwrap_or(0);
    let free_now = (padded <= limits.inline_budget).then(|| app.permits().try_acquire_owned().ok()).flatten();
    let rows = match free_now {
        Some(_permit) => predict_rows(&loaded, &texts, &lengths, &limits),
        None => {
            let permit = app.permits().acquire_owned().await.map_err(|e| failed(e.to_string()))?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                predict_rows(&loaded, &texts, &lengths, &limits)
            })
            .await
            .map_err(|_| failed("the prediction panicked".to_string()))?
        }
    };
    rows.map_err(|e| failed(e.to_string()))?
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| failed("the model answered fewer rows than it was given".to_string()))
}

/// Predicts `texts` in chunks within the budget; each row's answer, in the request's order.
fn predict_rows(
    loaded: &Loaded,
    texts: &[String],
    lengths: &[usize],
    limits: &Limits,
) -> Result<Vec<Option<RowAnswer>>, model::ModelError> {
    let mut rows: Vec<Option<RowAnswer>> = (0..texts.len()).map(|_| None).collect();
    for chunk in chunks(lengths, limits.chunk_budget, limits.chunk_rows) {
        let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
        let prediction = loaded.model().predict(model::Batch::Texts(&batch))?;
        for (i, answer) in chunk.into_iter().zip(answers(loaded, prediction)) {
            rows[i] = Some(answer);
        }
    }
    Ok(rows)
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
        let got = match PredictRequest::parse(body.as_bytes(), &Limits::default()) {
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
        let max = Limits::default().max_rows;
        check(r#"{"texts": []}"#, "400 `texts` is empty; send at least one text");
        let over = serde_json::json!({ "texts": vec!["x"; max + 1] }).to_string();
        check(&over, "413 1025 texts in one request; the limit is 1024");
        let at = serde_json::json!({ "texts": vec!["x"; max] }).to_string();
        assert!(PredictRequest::parse(at.as_bytes(), &Limits::default()).is_ok());
    }

    #[test]
    fn a_text_over_the_length_cap_is_refused_whatever_the_form() {
        let cap = Limits::default().max_text_chars;
        let long = "é".repeat(cap + 1);
        let expect =
            format!("413 text 0 is {} characters long; the limit is {cap} (the server's --max-text-chars)", cap + 1);
        check(&serde_json::json!({ "text": long }).to_string(), &expect);
        let batch = serde_json::json!({ "texts": ["short", long] }).to_string();
        check(&batch, &expect.replace("text 0", "text 1"));
        let at = serde_json::json!({ "text": "é".repeat(cap) }).to_string();
        assert!(PredictRequest::parse(at.as_bytes(), &Limits::default()).is_ok(), "characters, not bytes");
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

#[cfg(test)]
#[path = "../../engine/tests/mutate.rs"]
mod mutate;

/// Property tests: no body panics the parser, what it accepts is within the limits, and a
/// batch is always cut into chunks within the work budget.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::limits::chunks;

    const BODIES: &[&str] = &[
        r#"{"text": "a good film"}"#,
        r#"{"texts": ["a good film", "dull", "caf\u00e9 \ud83d\ude00", ""]}"#,
        r#"{"texts": ["x", "y", "z", "w", "v", "u", "t", "s"]}"#,
    ];

    /// Small limits, so that edits cross them often.
    fn limits() -> Limits {
        Limits { max_rows: 6, max_text_chars: 12, ..Limits::default() }
    }

    #[test]
    fn a_body_is_refused_with_a_client_error_or_is_within_the_limits() {
        super::mutate::run("serve: /predict body", super::mutate::inputs(BODIES), |body| {
            let request = match PredictRequest::parse(&body, &limits()) {
                Ok(request) => request,
                Err(e) => {
                    prop_assert!(e.status.is_client_error() && !e.message.is_empty());
                    return Ok(false);
                }
            };
            let texts = match &request {
                PredictRequest::Single(s) => vec![s.text.clone()],
                PredictRequest::Batch(b) => b.texts.clone(),
            };
            prop_assert!(!texts.is_empty() && texts.len() <= limits().max_rows);
            prop_assert!(texts.iter().all(|t| t.chars().count() <= limits().max_text_chars));
            Ok(true)
        });
    }

    #[test]
    fn every_row_lands_in_one_chunk_within_the_budget() {
        let input = (prop::collection::vec(0..5000usize, 0..300), 1..20_000usize, 1..64usize);
        super::mutate::run("serve: chunks", input, |(lengths, budget, max_rows)| {
            let cut = chunks(&lengths, budget, max_rows);
            let mut seen: Vec<usize> = cut.iter().flatten().copied().collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
            for chunk in &cut {
                let longest = chunk.iter().map(|&i| lengths[i]).max().unwrap();
                prop_assert!(!chunk.is_empty() && chunk.len() <= max_rows);
                prop_assert!(chunk.len() == 1 || chunk.len() * longest <= budget, "{chunk:?} over {budget}");
            }
            Ok(true)
        });
    }
}
