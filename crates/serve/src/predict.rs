//! `/predict`: the request forms, their validation into JSON errors with the right status, and
//! the prediction itself, run on tokio's blocking pool in calls of bounded work.

use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::admit::admit;
use crate::app::App;
use crate::limits::{Limits, RETRY_AFTER_SECONDS, chunks};
use crate::load::Loaded;

const FORMS: &str = r#"expected a JSON object: {"text": "..."}, {"texts": ["...", ...]}, {"features": [x, ...]} or {"instances": [[x, ...], ...]}"#;

/// An error answered as `{"error": "..."}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// Answered with `Connection: close`: the request's body was not read to its end, so the
    /// connection cannot carry another request.
    pub(crate) close: bool,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), close: false }
    }

    /// The same error, answered with `Connection: close`.
    pub(crate) fn closing(self) -> ApiError {
        ApiError { close: true, ..self }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json(self.status, &serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
        }
        if self.close {
            // hyper would close the connection anyway, but it may decide that only after the
            // head is written, and a client that saw no `close` would send its next request
            // into a socket already shut.
            response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
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

/// The rows of one request, within the server's limits but not yet held to the model.
#[derive(Debug, PartialEq)]
pub(crate) enum Rows {
    /// One text per row.
    Texts(Vec<String>),
    /// One feature row per row, all of one width.
    Features(Vec<Vec<f32>>),
}

impl Rows {
    /// How many rows.
    pub(crate) fn len(&self) -> usize {
        match self {
            Rows::Texts(t) => t.len(),
            Rows::Features(f) => f.len(),
        }
    }

    /// The work of each row, for cutting a request into calls within the budget: a text's
    /// characters, a feature row's width.
    fn costs(&self) -> Vec<usize> {
        match self {
            Rows::Texts(t) => t.iter().map(|t| t.chars().count()).collect(),
            Rows::Features(f) => f.iter().map(Vec::len).collect(),
        }
    }

    /// Whether the model takes these rows: the kind of input and, where the model fixes it,
    /// the width (422 with what to send otherwise).
    pub(crate) fn fit(&self, signature: &model::Signature) -> Result<(), ApiError> {
        let unfit = |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message);
        let input = &signature.input;
        match (self, &signature.kind) {
            (Rows::Texts(_), model::InputKind::Text) => Ok(()),
            (Rows::Features(rows), model::InputKind::Features { width }) => match width {
                Some(w) if rows[0].len() != *w => Err(unfit(format!(
                    "the model takes {w} features per row (its input `{input}`); the request has {}",
                    rows[0].len()
                ))),
                _ => Ok(()),
            },
            (Rows::Texts(_), model::InputKind::Features { width }) => {
                let width = width.map_or("float".to_string(), |w| format!("{w} float"));
                Err(unfit(format!(
                    r#"the model takes {width} features per row (its input `{input}`), not text; send {{"features": [x, ...]}} or {{"instances": [[x, ...], ...]}}"#
                )))
            }
            (Rows::Features(_), model::InputKind::Text) => Err(unfit(format!(
                r#"the model takes text (its input `{input}`), not features; send {{"text": "..."}} or {{"texts": ["...", ...]}}"#
            ))),
        }
    }
}

/// A `/predict` body: its rows, and whether it was the single-row form (answered as one
/// object rather than a list).
#[derive(Debug, PartialEq)]
pub(crate) struct PredictRequest {
    pub(crate) rows: Rows,
    pub(crate) single: bool,
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
        let mut fields = object.into_iter();
        let (Some((key, value)), None) = (fields.next(), fields.next()) else { return Err(neither()) };
        let (rows, single) = match (key.as_str(), value) {
            ("text", serde_json::Value::String(text)) => (Rows::Texts(vec![text]), true),
            ("texts", value) => {
                let texts: Vec<String> = serde_json::from_value(value).map_err(|_| neither())?;
                (Rows::Texts(texts), false)
            }
            ("features", serde_json::Value::Array(values)) => {
                (Rows::Features(vec![feature_row("features", values, limits)?]), true)
            }
            ("instances", serde_json::Value::Array(rows)) => {
                check_count("instances", "rows", rows.len(), limits)?;
                let rows = rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, row)| match row {
                        serde_json::Value::Array(values) => feature_row(&format!("instances[{i}]"), values, limits),
                        other => Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            format!("instances[{i}] is {}, not a list of numbers", kind_of(&other)),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (Rows::Features(rows), false)
            }
            _ => return Err(neither()),
        };
        check_rows(&rows, limits)?;
        Ok(PredictRequest { rows, single })
    }
}

/// At least one row and at most the limit.
fn check_count(field: &str, what: &str, n: usize, limits: &Limits) -> Result<(), ApiError> {
    if n == 0 {
        let one = what.trim_end_matches('s');
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("`{field}` is empty; send at least one {one}")));
    }
    if n > limits.max_rows {
        let msg = format!("{n} {what} in one request; the limit is {}", limits.max_rows);
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, msg));
    }
    Ok(())
}

/// What every request form must hold to: a row count within the limit, texts within the
/// length cap, feature rows of one width.
pub(crate) fn check_rows(rows: &Rows, limits: &Limits) -> Result<(), ApiError> {
    match rows {
        Rows::Texts(texts) => {
            check_count("texts", "texts", texts.len(), limits)?;
            if let Some((i, n)) =
                texts.iter().map(|t| t.chars().count()).enumerate().find(|(_, n)| *n > limits.max_text_chars)
            {
                let msg = format!(
                    "text {i} is {n} characters long; the limit is {} (the server's --max-text-chars)",
                    limits.max_text_chars
                );
                return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, msg));
            }
        }
        Rows::Features(rows) => {
            check_count("instances", "rows", rows.len(), limits)?;
            if let Some(i) = rows.iter().position(|r| r.len() != rows[0].len()) {
                let msg = format!("row {i} has {} features; row 0 has {}", rows[i].len(), rows[0].len());
                return Err(ApiError::new(StatusCode::BAD_REQUEST, msg));
            }
        }
    }
    Ok(())
}

/// One row of features from JSON numbers, each finite in float32, the width within the limit.
pub(crate) fn feature_row(at: &str, values: Vec<serde_json::Value>, limits: &Limits) -> Result<Vec<f32>, ApiError> {
    if values.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("{at} is empty; send at least one feature")));
    }
    if values.len() > limits.max_features {
        let msg = format!("{at} has {} features; the limit is {}", values.len(), limits.max_features);
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, msg));
    }
    values.iter().enumerate().map(|(j, v)| feature(&format!("{at}[{j}]"), v)).collect()
}

/// One feature value: a JSON number that float32 can hold.
pub(crate) fn feature(at: &str, value: &serde_json::Value) -> Result<f32, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    match value {
        serde_json::Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN) as f32;
            if x.is_finite() { Ok(x) } else { Err(bad(format!("{at} is {n}, beyond the range of float32"))) }
        }
        other => Err(bad(format!("{at} is {}, not a number", kind_of(other)))),
    }
}

/// "a string", "null", … for an error message.
pub(crate) fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A request admitted to `/predict`: its slot among the requests the server takes at once is
/// held until the answer is written.
pub(crate) struct Admitted {
    request: PredictRequest,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// The body extractor of `/predict`: admitted with a JSON content type, then one of the forms
/// within the limits.
impl FromRequest<App> for Admitted {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        let admitted = admit(req, app, is_json).await?;
        let request = PredictRequest::parse(&admitted.body, app.limits())?;
        Ok(Admitted { request, _slot: admitted.slot })
    }
}

/// `application/json`, with or without parameters such as `charset`.
pub(crate) fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// One row's answer: its label and its probabilities keyed by class, in column order.
pub(crate) struct RowAnswer {
    pub(crate) label: String,
    pub(crate) probabilities: Vec<(String, f32)>,
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

/// The loaded model, or 503 while it loads.
pub(crate) fn loaded(app: &App) -> Result<Arc<Loaded>, ApiError> {
    app.loaded().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model is not loaded yet; poll /readyz until it answers 200")
    })
}

/// `POST /predict`.
pub(crate) async fn handler(State(app): State<App>, admitted: Admitted) -> Result<Response, ApiError> {
    let PredictRequest { rows, single } = admitted.request;
    let loaded = loaded(&app)?;
    rows.fit(loaded.model().signature())?;
    let rows = predict(&app, loaded, rows).await?;
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
/// run on the blocking pool. The rows must [fit](Rows::fit) the model.
pub(crate) async fn predict(app: &App, loaded: Arc<Loaded>, rows: Rows) -> Result<Vec<RowAnswer>, ApiError> {
    let failed = |message: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message);
    let limits = app.limits().clone();
    let costs = rows.costs();
    let padded = rows.len() * costs.iter().copied().max().unwrap_or(0);
    let free_now = (padded <= limits.inline_budget).then(|| app.permits().try_acquire_owned().ok()).flatten();
    let answers = match free_now {
        Some(_permit) => predict_rows(&loaded, &rows, &costs, &limits),
        None => {
            let permit = app.permits().acquire_owned().await.map_err(|e| failed(e.to_string()))?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                predict_rows(&loaded, &rows, &costs, &limits)
            })
            .await
            .map_err(|_| failed("the prediction panicked".to_string()))?
        }
    };
    answers
        .map_err(|e| match e {
            // Rows that fit the signature can still be refused by the graph (a fixed batch size).
            model::ModelError::Input { detail } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail),
            e => failed(e.to_string()),
        })?
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| failed("the model answered fewer rows than it was given".to_string()))
}

/// Predicts `rows` in chunks within the budget; each row's answer, in the request's order.
fn predict_rows(
    loaded: &Loaded,
    rows: &Rows,
    costs: &[usize],
    limits: &Limits,
) -> Result<Vec<Option<RowAnswer>>, model::ModelError> {
    let mut answered: Vec<Option<RowAnswer>> = (0..rows.len()).map(|_| None).collect();
    for chunk in chunks(costs, limits.chunk_budget, limits.chunk_rows) {
        let prediction = match rows {
            Rows::Texts(texts) => {
                let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
                loaded.model().predict(model::Batch::Texts(&batch))?
            }
            Rows::Features(features) => {
                let batch: Vec<Vec<f32>> = chunk.iter().map(|&i| features[i].clone()).collect();
                loaded.model().predict(model::Batch::Features(&batch))?
            }
        };
        for (i, answer) in chunk.into_iter().zip(answers(loaded, prediction)) {
            answered[i] = Some(answer);
        }
    }
    Ok(answered)
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
        check(r#"{"text": "good film"}"#, r#"PredictRequest { rows: Texts(["good film"]), single: true }"#);
        check(r#"{"texts": ["a", "b"]}"#, r#"PredictRequest { rows: Texts(["a", "b"]), single: false }"#);
        check(r#"{"text": ""}"#, r#"PredictRequest { rows: Texts([""]), single: true }"#);
        check(r#"{"features": [1, -2.5, 0]}"#, "PredictRequest { rows: Features([[1.0, -2.5, 0.0]]), single: true }");
        check(
            r#"{"instances": [[1, 2], [3, 4.5]]}"#,
            "PredictRequest { rows: Features([[1.0, 2.0], [3.0, 4.5]]), single: false }",
        );
    }

    #[test]
    fn bad_feature_rows_say_which_value() {
        check(r#"{"features": [1, "a", 3]}"#, "400 features[1] is a string, not a number");
        check(r#"{"features": [1, null]}"#, "400 features[1] is null, not a number");
        check(r#"{"features": []}"#, "400 features is empty; send at least one feature");
        check(r#"{"features": [1e39]}"#, "400 features[0] is 1e+39, beyond the range of float32");
        check(r#"{"instances": []}"#, "400 `instances` is empty; send at least one row");
        check(r#"{"instances": [[1, 2], 3]}"#, "400 instances[1] is a number, not a list of numbers");
        check(r#"{"instances": [[1, 2], [3]]}"#, "400 row 1 has 1 features; row 0 has 2");
        check(r#"{"instances": [[1, [2]]]}"#, "400 instances[0][1] is a list, not a number");
        // JSON has no NaN: it is malformed, not a number.
        check(r#"{"features": [NaN]}"#, "400 malformed JSON: expected value at line 1 column 15");
        let max = Limits::default().max_rows;
        let over = serde_json::json!({ "instances": vec![[1.0]; max + 1] }).to_string();
        check(&over, "413 1025 rows in one request; the limit is 1024");
        let wide = serde_json::json!({ "features": vec![0.5; Limits::default().max_features + 1] }).to_string();
        check(
            &wide,
            &format!(
                "413 features has {} features; the limit is {}",
                Limits::default().max_features + 1,
                Limits::default().max_features
            ),
        );
    }

    #[test]
    fn bodies_of_neither_form_name_both_forms() {
        let neither = format!("400 {FORMS}");
        for body in [
            r#"{}"#,
            r#"{"text": 1}"#,
            r#"{"texts": "a"}"#,
            r#"{"texts": [1]}"#,
            r#"["a"]"#,
            r#""a""#,
            r#"{"features": 1}"#,
            r#"{"instances": {"a": 1}}"#,
        ] {
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
        r#"{"features": [0.5, -1, 3e38, 12]}"#,
        r#"{"instances": [[1, 2, 3], [4, 5, 6], [7, 8.25, -9]]}"#,
    ];

    /// Small limits, so that edits cross them often.
    fn limits() -> Limits {
        Limits { max_rows: 6, max_text_chars: 12, max_features: 5, ..Limits::default() }
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
            prop_assert!(request.rows.len() >= 1 && request.rows.len() <= limits().max_rows);
            match &request.rows {
                Rows::Texts(texts) => {
                    prop_assert!(texts.iter().all(|t| t.chars().count() <= limits().max_text_chars));
                }
                Rows::Features(rows) => {
                    prop_assert!(rows.iter().all(|r| !r.is_empty() && r.len() == rows[0].len()));
                    prop_assert!(rows.iter().flatten().all(|x| x.is_finite()));
                    prop_assert!(rows[0].len() <= limits().max_features);
                }
            }
            prop_assert!(!request.single || request.rows.len() == 1);
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
