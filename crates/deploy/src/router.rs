//! The router that gives an environment a stable port: it forwards every request to the
//! current backend, and a switch to a new backend waits until the old one has answered every
//! request it was given. That is what makes a version switch lose no request.
//!
//! It listens on two ports: the environment's public one, and an admin one on 127.0.0.1 with
//! `GET /backend`, `PUT /backend` (body: `host:port`; answers once the old backend is drained)
//! and `POST /shutdown`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long a switch waits for the old backend's requests to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

type Body = Full<Bytes>;

#[derive(Default)]
struct State {
    backend: Mutex<Option<String>>,
    in_flight: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

impl State {
    fn current(&self) -> Option<(String, Arc<AtomicUsize>)> {
        let backend = self.backend.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let counter = self.counter(&backend);
        Some((backend, counter))
    }

    fn counter(&self, backend: &str) -> Arc<AtomicUsize> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).entry(backend.to_string()).or_default().clone()
    }
}

/// The addresses a running router listens on.
#[derive(Clone, Copy, Debug)]
pub struct RouterAddrs {
    /// The public, stable port.
    pub public: SocketAddr,
    /// The admin port, on loopback.
    pub admin: SocketAddr,
}

/// Binds both ports and serves until `POST /shutdown` on the admin port. `ready` receives the
/// bound addresses once both listen.
pub async fn run(
    public: SocketAddr,
    admin: SocketAddr,
    backend: Option<String>,
    ready: impl FnOnce(RouterAddrs),
) -> Result<()> {
    let public_listener = TcpListener::bind(public).await.with_context(|| format!("cannot listen on {public}"))?;
    let admin_listener = TcpListener::bind(admin).await.with_context(|| format!("cannot listen on {admin}"))?;
    ready(RouterAddrs { public: public_listener.local_addr()?, admin: admin_listener.local_addr()? });
    let state = Arc::new(State { backend: Mutex::new(backend), ..State::default() });
    let client: Client<HttpConnector, Body> =
        Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http();
    let (stop_tx, stop_rx) = watch::channel(false);
    let proxy = {
        let state = state.clone();
        serve_loop(public_listener, stop_rx.clone(), move |req| proxy(req, state.clone(), client.clone()))
    };
    let admin = serve_loop(admin_listener, stop_rx, move |req| admin_api(req, state.clone(), stop_tx.clone()));
    let (a, b) = tokio::join!(proxy, admin);
    a.and(b)
}

async fn serve_loop<F, Fut>(listener: TcpListener, mut stop: watch::Receiver<bool>, handle: F) -> Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn proxy(req: Request<Incoming>, state: Arc<State>, client: Client<HttpConnector, Body>) -> Response<Body> {
    let Some((backend, counter)) = state.current() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no release is deployed to this environment yet\n");
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let answer = forward(req, &backend, &client).await;
    counter.fetch_sub(1, Ordering::SeqCst);
    answer.unwrap_or_else(|e| text(StatusCode::BAD_GATEWAY, &format!("the backend {backend} failed: {e}\n")))
}

async fn forward(
    req: Request<Incoming>,
    backend: &str,
    client: &Client<HttpConnector, Body>,
) -> Result<Response<Body>> {
    let (mut parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{backend}{path}").parse()?;
    parts.headers.remove(hyper::header::HOST);
    let response = client.request(Request::from_parts(parts, Full::new(body))).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

async fn admin_api(req: Request<Incoming>, state: Arc<State>, stop: watch::Sender<bool>) -> Response<Body> {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/backend") => {
            let current = state.backend.lock().unwrap_or_else(|e| e.into_inner()).clone();
            text(StatusCode::OK, &current.unwrap_or_default())
        }
        ("PUT", "/backend") => {
            let Ok(body) = req.into_body().collect().await else {
                return text(StatusCode::BAD_REQUEST, "unreadable body");
            };
            let new = String::from_utf8_lossy(&body.to_bytes()).trim().to_string();
            switch(&state, new).await
        }
        ("POST", "/shutdown") => {
            let _ = stop.send(true);
            text(StatusCode::OK, "bye")
        }
        _ => text(StatusCode::NOT_FOUND, "GET /backend, PUT /backend, POST /shutdown"),
    }
}

/// Points new requests at `new`, then waits for the old backend's requests to finish.
async fn switch(state: &State, new: String) -> Response<Body> {
    if new.parse::<SocketAddr>().is_err() {
        return text(StatusCode::BAD_REQUEST, "the backend must be host:port, e.g. 127.0.0.1:40123");
    }
    let old = state.backend.lock().unwrap_or_else(|e| e.into_inner()).replace(new.clone());
    let Some(old) = old.filter(|o| *o != new) else { return text(StatusCode::OK, "switched") };
    let counter = state.counter(&old);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while counter.load(Ordering::SeqCst) > 0 {
        if Instant::now() > deadline {
            return text(
                StatusCode::GATEWAY_TIMEOUT,
                &format!("switched, but {old} still had requests after {DRAIN_TIMEOUT:?}"),
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    text(StatusCode::OK, &format!("switched from {old}, drained"))
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r
}
