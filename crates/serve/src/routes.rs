//! The HTTP surface: routes, the middleware that counts every request and stamps the model's
//! identity on every response, and the JSON answers for unknown paths and methods.

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::app::{App, Readiness};
use crate::metrics::ModelInfo;
use crate::predict::{self, ApiError, json};

const MODEL_VERSION: HeaderName = HeaderName::from_static("x-model-version");
const MODEL_DIGEST: HeaderName = HeaderName::from_static("x-model-digest");

/// Every route, with the body limit and the tracking middleware.
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/predict", post(predict::handler))
        .route("/metrics", get(metrics))
        .merge(crate::v2::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(app.limits().max_body_bytes))
        .layer(middleware::from_fn_with_state(app.clone(), track))
        .with_state(app)
}

/// Counts the request and its duration, and adds the model headers once a model is loaded.
async fn track(State(app): State<App>, request: Request, next: Next) -> Response {
    // The route pattern, not the raw path, so a client cannot mint label values.
    let path = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let started = Instant::now();
    let in_flight = app.metrics().start();
    let mut response = next.run(request).await;
    drop(in_flight);
    app.metrics().observe(&path, response.status().as_u16(), started.elapsed());
    if let Some(loaded) = app.loaded() {
        let headers = response.headers_mut();
        for (name, value) in [(MODEL_VERSION, loaded.version()), (MODEL_DIGEST, loaded.digest())] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
    }
    response
}

/// `GET /healthz`: the process is up and listening, whatever the model's state.
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 once the model serves, 503 while it loads or after it failed.
async fn readyz(State(app): State<App>) -> Response {
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    match app.readiness() {
        Readiness::Ready(loaded) => json(
            StatusCode::OK,
            &serde_json::json!({ "ready": true, "model_version": loaded.version(), "model_digest": loaded.digest() }),
        ),
        Readiness::Loading => json(unavailable, &serde_json::json!({ "ready": false, "state": "loading" })),
        Readiness::Failed(error) => {
            json(unavailable, &serde_json::json!({ "ready": false, "state": "failed", "error": error }))
        }
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(app): State<App>) -> Response {
    let loaded = app.loaded();
    let info = loaded.as_ref().map(|l| ModelInfo { version: l.version(), digest: l.digest() });
    let text = app.metrics().render(info);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Refusals of a request whose body is not read: with one, the connection closes (see admit.rs).
fn unread(req: &Request, error: ApiError) -> ApiError {
    let length = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING) || length.is_some_and(|l| l.trim() != "0");
    if has_body { error.closing() } else { error }
}

async fn not_found(req: Request) -> ApiError {
    let msg = "no such endpoint; try POST /predict, GET /healthz, /readyz or /metrics, or the Open Inference Protocol under /v2";
    unread(&req, ApiError::new(StatusCode::NOT_FOUND, msg))
}

async fn method_not_allowed(req: Request) -> ApiError {
    let msg = "method not allowed; /predict and /v2/models/{name}/infer take POST, the others GET";
    unread(&req, ApiError::new(StatusCode::METHOD_NOT_ALLOWED, msg))
}
