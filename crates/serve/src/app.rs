//! The state every route shares: readiness (loading, ready with a model, or failed), the
//! metrics, and the permits that bound how many predictions run at once.

use std::sync::{Arc, RwLock};

use tokio::sync::Semaphore;

use crate::limits::Limits;
use crate::load::Loaded;
use crate::metrics::Metrics;

/// Where the server is in its life: it answers `/healthz` in all three states, `/predict` only
/// when ready.
#[derive(Clone)]
pub enum Readiness {
    /// The model is still loading.
    Loading,
    /// The model is loaded and serving.
    Ready(Arc<Loaded>),
    /// Loading failed, with the error as the user will read it.
    Failed(String),
}

/// The routes' shared state; cheap to clone.
#[derive(Clone)]
pub struct App(Arc<Shared>);

struct Shared {
    readiness: RwLock<Readiness>,
    metrics: Metrics,
    /// One permit per ONNX Runtime session: a request waits here, on the async side, rather
    /// than parking a blocking-pool thread on a busy session.
    permits: Arc<Semaphore>,
    /// The `/predict` requests taken at once (reading their body, waiting, predicting).
    admission: Arc<Semaphore>,
    limits: Limits,
    model_name: String,
}

impl App {
    /// A loading server whose predictions run `sessions` at a time, within `limits`, serving
    /// its model as `model_name` on the Open Inference Protocol's paths.
    pub fn new(sessions: usize, limits: Limits, model_name: &str) -> App {
        App(Arc::new(Shared {
            readiness: RwLock::new(Readiness::Loading),
            metrics: Metrics::default(),
            permits: Arc::new(Semaphore::new(sessions.max(1))),
            admission: Arc::new(Semaphore::new(limits.max_predict_requests.max(1))),
            limits,
            model_name: model_name.to_string(),
        }))
    }

    /// The limits the server enforces.
    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// The model's name on the Open Inference Protocol's paths (`/v2/models/{name}`).
    pub fn model_name(&self) -> &str {
        &self.0.model_name
    }

    /// Where the server is now.
    pub fn readiness(&self) -> Readiness {
        self.0.readiness.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The model, once loaded.
    pub fn loaded(&self) -> Option<Arc<Loaded>> {
        match self.readiness() {
            Readiness::Ready(loaded) => Some(loaded),
            Readiness::Loading | Readiness::Failed(_) => None,
        }
    }

    /// Starts serving `loaded`.
    pub fn set_ready(&self, loaded: Loaded) {
        self.set(Readiness::Ready(Arc::new(loaded)));
    }

    /// Records that loading failed; `/readyz` shows `error`.
    pub fn set_failed(&self, error: String) {
        self.set(Readiness::Failed(error));
    }

    fn set(&self, readiness: Readiness) {
        *self.0.readiness.write().unwrap_or_else(|e| e.into_inner()) = readiness;
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub(crate) fn permits(&self) -> Arc<Semaphore> {
        self.0.permits.clone()
    }

    pub(crate) fn admission(&self) -> Arc<Semaphore> {
        self.0.admission.clone()
    }
}
