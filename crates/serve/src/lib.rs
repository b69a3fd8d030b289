//! The Slipway model server: one ONNX model — text or feature rows — behind `/predict` and the
//! Open Inference Protocol's `/v2` endpoints, with `/healthz`, `/readyz` and `/metrics`, as a
//! library so tests can run it in-process and `main.rs` stays thin.
//!
//! The listener is bound before anything else ([`Server::bind`]), so a taken port fails at once;
//! the model then loads in the background while `/healthz` already answers ([`Server::run`]).

mod admit;
mod app;
mod conn;
mod limits;
mod load;
mod metrics;
mod predict;
mod routes;
mod v2;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use app::{App, Readiness};
pub use limits::{Limits, chunks};
pub use load::{LoadError, Loaded};
/// The model's name on the Open Inference Protocol's paths unless told otherwise.
pub const DEFAULT_MODEL_NAME: &str = "model";

/// How long a shutdown waits for in-flight requests by default.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How to serve.
#[derive(Clone, Debug)]
pub struct Config {
    /// The ONNX model file.
    pub model: PathBuf,
    /// Where to listen; port 0 picks a free port ([`Server::local_addr`] tells which).
    pub listen: SocketAddr,
    /// ONNX Runtime sessions, and so predictions running at once (at least one).
    pub sessions: usize,
    /// The version to report; `None` means the first 12 hex digits of the model's BLAKE3.
    pub model_version: Option<String>,
    /// The model's name on the Open Inference Protocol's paths (`/v2/models/{name}`).
    pub model_name: String,
    /// Where to find ONNX Runtime.
    pub runtime: model::RuntimeSearch,
    /// How long a shutdown waits for in-flight requests before giving up on them.
    pub drain_timeout: Duration,
    /// What requests may make the server do.
    pub limits: Limits,
}

impl Config {
    /// A config with the defaults for everything but the model and the address.
    pub fn new(model: PathBuf, listen: SocketAddr, runtime: model::RuntimeSearch) -> Config {
        let sessions = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            model,
            listen,
            sessions,
            model_version: None,
            model_name: DEFAULT_MODEL_NAME.to_string(),
            runtime,
            drain_timeout: DRAIN_TIMEOUT,
            limits: Limits::default(),
        }
    }
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The model could not be loaded; the server stopped after saying so on `/readyz`.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Accepting connections failed.
    #[error("the server failed: {0}")]
    Io(std::io::Error),
}

impl ServeError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            ServeError::Bind { .. } => Some(
                "another process may hold the port: stop it, or pass another address with --listen or SLIPWAY_LISTEN",
            ),
            ServeError::Load(e) => e.help(),
            ServeError::Io(_) => None,
        }
    }
}

/// A bound, not yet serving, model server.
pub struct Server {
    listener: TcpListener,
    app: App,
    config: Config,
}

impl Server {
    /// Binds the listener; nothing is loaded yet.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Bind { addr: config.listen, source })?;
        Ok(Server { listener, app: App::new(config.sessions, config.limits.clone(), &config.model_name), config })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound TCP listener has an address")
    }

    /// The shared state behind the routes: its readiness can be read, or set by a caller that
    /// uses [`Server::serve`] and loads the model itself.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Loads the model in the background and serves until `shutdown` resolves or loading fails.
    /// A failed load is shown on `/readyz`, then in-flight requests drain and the error is
    /// returned.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let (app, config) = (self.app.clone(), self.config.clone());
        let (failed_tx, mut failed_rx) = oneshot::channel();
        let stop = async move {
            tokio::select! {
                () = shutdown => {}
                err = load::in_background(app, config) => { let _ = failed_tx.send(err); }
            }
        };
        self.serve(stop).await?;
        match failed_rx.try_recv() {
            Ok(err) => Err(ServeError::Load(err)),
            Err(_) => Ok(()),
        }
    }

    /// Serves without loading anything until `shutdown` resolves, then stops accepting and
    /// waits up to the drain timeout for in-flight requests.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let router = routes::router(self.app.clone());
        conn::serve(self.listener, router, &self.config.limits, shutdown, self.config.drain_timeout).await;
        Ok(())
    }
}
