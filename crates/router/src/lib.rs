//! The router that gives an environment a stable port: it forwards every request to the
//! current backend, and a switch to a new backend waits until the old one has answered every
//! request it was given. That is what makes a version switch lose no request.
//!
//! It listens on two ports: the environment's public one, and an admin one on 127.0.0.1 with
//! `GET /backend`, `PUT /backend` (body: `host:port`; answers once the old backend is drained),
//! `PUT /canary` (body: `host:port WEIGHT`: that percentage of requests goes to a candidate),
//! `DELETE /canary` (all back to the backend; answers once the candidate is drained),
//! `PUT /shadow` (body: `host:port SHARE`: that percentage of `POST /predict` requests is also
//! sent to a candidate, after the live answer, whose answer is compared and dropped),
//! `DELETE /shadow`, `GET /metrics` (per backend: requests, errors, latency, and a shadow's
//! agreement, in Prometheus' format) and `POST /shutdown`. Each forwarded request carries
//! `x-slipway-route: stable`, `canary` or `shadow`. The admin port answers only requests that carry the environment's
//! token (`Authorization: Bearer …`, from a 0600 file in its state directory).
//!
//! A request counts as in flight only once its whole body has arrived, and stops counting when
//! it ends however it ends (a drop guard): a client that sends headers and never the body holds
//! nothing up. Headers must arrive within [`HEADER_TIMEOUT`] and bodies within
//! [`BODY_TIMEOUT`]; connections are capped at [`MAX_CONNECTIONS`]. A switch whose old backend
//! still has requests after [`DRAIN_TIMEOUT`] is a completed switch with a warning, never a
//! half state.

pub mod stats;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// How long a switch waits for the old backend's requests to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's body (408 beyond).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest body forwarded (413 beyond): above the server's own limit, so its answer shows.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// The largest answer taken from a backend (the live release's or a shadow's).
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// Connections served at once on each port.
pub const MAX_CONNECTIONS: usize = 4096;
/// The header a drained-or-not switch answers with.
pub const DRAINED_HEADER: &str = "x-slipway-drained";
/// How long a backend may take to answer a forwarded request (504 beyond).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);
/// The header each forwarded request carries: `stable` or `canary`.
pub const ROUTE_HEADER: &str = "x-slipway-route";

type Body = Full<Bytes>;

#[derive(Default)]
struct State {
    backend: Mutex<Option<String>>,
    /// A candidate and the percentage of requests it gets.
    canary: Mutex<Option<(String, u64)>>,
    /// Requests routed so far, for the split.
    seq: AtomicU64,
    /// A candidate that sees a copy of this percentage of predictions, and the count for it.
    shadow: Mutex<Option<(String, u64)>>,
    shadow_seq: AtomicU64,
    /// Room for mirrored requests in flight; a mirror that finds none is skipped, never queued.
    mirrors: Mirrors,
    in_flight: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    stats: stats::Stats,
}

impl State {
    /// Where the next request goes, and as what, counted in flight there already: chosen and
    /// counted under the locks a switch or a canary's end takes, so that a drain can never
    /// miss a request that was chosen but not yet counted.
    fn current(&self) -> Option<(String, &'static str, InFlight)> {
        let stable = self.backend.lock().unwrap_or_else(|e| e.into_inner());
        let canary = self.canary.lock().unwrap_or_else(|e| e.into_inner());
        let (backend, role) = match (&*stable, &*canary) {
            (None, _) => return None,
            // Spread over every hundred requests rather than in a block of `weight`: 61 and 100
            // are coprime, so each hundred consecutive requests gives the canary exactly `weight`.
            (Some(_), Some((candidate, weight)))
                if ((self.seq.fetch_add(1, Ordering::Relaxed) % 100) * 61) % 100 < *weight =>
            {
                (candidate.clone(), "canary")
            }
            (Some(stable), _) => (stable.clone(), "stable"),
        };
        let in_flight = InFlight::start(self.counter(&backend));
        Some((backend, role, in_flight))
    }

    fn counter(&self, backend: &str) -> Arc<AtomicUsize> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).entry(backend.to_string()).or_default().clone()
    }
}

/// The most mirrored requests in flight at once.
pub const MAX_MIRRORS: usize = 32;

struct Mirrors(Arc<Semaphore>);

impl Default for Mirrors {
    fn default() -> Mirrors {
        Mirrors(Arc::new(Semaphore::new(MAX_MIRRORS)))
    }
}

/// One request counted in flight on a backend until it is dropped, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(counter: Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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

/// How to run a router.
#[derive(Clone, Debug)]
pub struct Options {
    /// The public, stable address.
    pub public: SocketAddr,
    /// The admin address (loopback).
    pub admin: SocketAddr,
    /// The backend to start with.
    pub backend: Option<String>,
    /// What the admin API's callers must present.
    pub token: String,
    /// How long a switch waits for the old backend; [`DRAIN_TIMEOUT`] by default.
    pub drain_timeout: Duration,
}

impl Options {
    /// Options with the default drain timeout.
    pub fn new(public: SocketAddr, admin: SocketAddr, backend: Option<String>, token: String) -> Options {
        Options { public, admin, backend, token, drain_timeout: DRAIN_TIMEOUT }
    }
}

/// Binds both ports and serves until `POST /shutdown` on the admin port. `ready` receives the
/// bound addresses once both listen.
pub async fn run(options: Options, ready: impl FnOnce(RouterAddrs)) -> Result<()> {
    anyhow::ensure!(options.token.len() >= 16, "the admin token must be at least 16 characters");
    let public_listener =
        TcpListener::bind(options.public).await.with_context(|| format!("cannot listen on {}", options.public))?;
    let admin_listener =
        TcpListener::bind(options.admin).await.with_context(|| format!("cannot listen on {}", options.admin))?;
    ready(RouterAddrs { public: public_listener.local_addr()?, admin: admin_listener.local_addr()? });
    let state = Arc::new(State { backend: Mutex::new(options.backend), ..State::default() });
    let client: Client<HttpConnector, Body> =
        Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http();
    let (stop_tx, stop_rx) = watch::channel(false);
    let proxy = {
        let state = state.clone();
        serve_loop(public_listener, stop_rx.clone(), move |req| proxy(req, state.clone(), client.clone()))
    };
    let token: Arc<str> = options.token.into();
    let drain = options.drain_timeout;
    let admin = serve_loop(admin_listener, stop_rx, move |req| {
        admin_api(req, state.clone(), stop_tx.clone(), token.clone(), drain)
    });
    let (a, b) = tokio::join!(proxy, admin);
    a.and(b)
}

async fn serve_loop<F, Fut, B>(listener: TcpListener, mut stop: watch::Receiver<bool>, handle: F) -> Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, a reset before accept: keep routing.
                eprintln!("router: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else { continue };
        let handle = handle.clone();
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(handle(req).await) }
            }),
        );
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
}

/// Reads a request's whole body within the time and size limits.
async fn read_body(body: Incoming) -> Result<Bytes, Response<Body>> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Err(_) => Err(text(StatusCode::REQUEST_TIMEOUT, &format!("the body did not arrive within {BODY_TIMEOUT:?}\n"))),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(text(StatusCode::PAYLOAD_TOO_LARGE, &format!("the body is over {MAX_BODY_BYTES} bytes\n")))
        }
        Ok(Err(e)) => Err(text(StatusCode::BAD_REQUEST, &format!("cannot read the body: {e}\n"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// A live answer's body that tells when the connection is done with it: a copy goes to the
/// shadow only then, so mirroring never competes with the live answer it copies.
struct Told {
    inner: Body,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Told {
    fn tell(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

impl hyper::body::Body for Told {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) {
            self.tell();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Told {
    fn drop(&mut self) {
        self.tell();
    }
}

async fn proxy(req: Request<Incoming>, state: Arc<State>, client: Client<HttpConnector, Body>) -> Response<Told> {
    let (answer, mirror) = route(req, &state, &client).await;
    let (parts, inner) = answer.into_parts();
    let done = mirror.map(|(mirror, live)| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            // A client that takes its answer slowly holds up its copy no longer than a body
            // may take; the copy then takes one of the shadow's places, or is dropped when
            // every place is taken. Until then a waiting copy holds only what its live
            // connection holds already.
            let _ = tokio::time::timeout(BODY_TIMEOUT, rx).await;
            let Ok(permit) = state.mirrors.0.clone().try_acquire_owned() else { return };
            shadow(state, client, mirror, live).await;
            drop(permit);
        });
        tx
    });
    Response::from_parts(parts, Told { inner, done })
}

/// A copy of a request for the shadow, and the live answer to compare the shadow's with.
type Mirrored = Option<(Mirror, Full<Bytes>)>;

async fn route(
    req: Request<Incoming>,
    state: &Arc<State>,
    client: &Client<HttpConnector, Body>,
) -> (Response<Body>, Mirrored) {
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(response) => return (response, None),
    };
    // Chosen, and counted, only now that the request is whole.
    let Some((backend, role, _in_flight)) = state.current() else {
        return (text(StatusCode::SERVICE_UNAVAILABLE, "no release is deployed to this environment yet\n"), None);
    };
    let figures = state.stats.of(&backend, role);
    let start = Instant::now();
    let mut parts = parts;
    let mirror = (role == "stable").then(|| mirror_of(state, &parts, &body)).flatten();
    parts.headers.insert(ROUTE_HEADER, hyper::header::HeaderValue::from_static(role));
    // A backend that hangs is an error of that backend, counted as one, not a request held forever.
    let answer = match tokio::time::timeout(FORWARD_TIMEOUT, forward(parts, body, &backend, client)).await {
        Ok(answer) => answer,
        Err(_) => Ok(text(
            StatusCode::GATEWAY_TIMEOUT,
            &format!("the backend {backend} did not answer within {FORWARD_TIMEOUT:?}\n"),
        )),
    };
    figures.observe(start.elapsed(), answer.as_ref().map_or(true, |r| r.status().is_server_error()));
    let mirrored = match (mirror, &answer) {
        (Some(mirror), Ok(live)) if live.status() == StatusCode::OK => Some((mirror, live.body().clone())),
        _ => None,
    };
    let answer =
        answer.unwrap_or_else(|e| text(StatusCode::BAD_GATEWAY, &format!("the backend {backend} failed: {e}\n")));
    (answer, mirrored)
}

/// A copy of a prediction request for the shadow, if there is one and this request is in its
/// share and there is room for it.
fn mirror_of(state: &State, parts: &hyper::http::request::Parts, body: &Bytes) -> Option<Mirror> {
    let (target, share) = state.shadow.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
    if parts.method != hyper::Method::POST || parts.uri.path() != "/predict" {
        return None;
    }
    if (state.shadow_seq.fetch_add(1, Ordering::Relaxed) * 61) % 100 >= share {
        return None;
    }
    let mut request = Request::builder().method(parts.method.clone()).uri(parts.uri.clone());
    for (k, v) in parts.headers.iter().filter(|(k, _)| k.as_str() != ROUTE_HEADER) {
        request = request.header(k, v);
    }
    let request = request.header(ROUTE_HEADER, "shadow").body(()).ok()?;
    Some(Mirror { target, request: request.into_parts().0, body: body.clone() })
}

struct Mirror {
    target: String,
    request: hyper::http::request::Parts,
    body: Bytes,
}

/// Sends the copy to the shadow, counts it, compares its answer with the live one, drops it.
async fn shadow(state: Arc<State>, client: Client<HttpConnector, Body>, m: Mirror, live: Full<Bytes>) {
    let figures = state.stats.of(&m.target, "shadow");
    let start = Instant::now();
    let answer = tokio::time::timeout(BODY_TIMEOUT, forward(m.request, m.body, &m.target, &client)).await;
    let answer = answer.map_err(anyhow::Error::from).and_then(|a| a);
    figures.observe(start.elapsed(), answer.as_ref().map_or(true, |r| r.status().is_server_error()));
    let live = live.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let compared = match answer {
        Ok(r) if r.status() == StatusCode::OK => {
            let theirs = r.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            compare(&live, &theirs)
        }
        _ => None,
    };
    state.stats.agreement(&m.target).add(compared);
}

/// Compares two `/predict` answers row by row: rows, rows with the same label, and the sum over
/// rows of the mean absolute difference of their class probabilities. `None` when either is
/// not an answer of that shape.
pub fn compare(live: &[u8], shadow: &[u8]) -> Option<(u64, u64, f64)> {
    fn rows(body: &[u8]) -> Option<Vec<serde_json::Value>> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        match v.get("predictions") {
            Some(serde_json::Value::Array(rows)) => Some(rows.clone()),
            Some(_) => None,
            None => v.get("label").is_some().then(|| vec![v]),
        }
    }
    let (a, b) = (rows(live)?, rows(shadow)?);
    if a.len() != b.len() {
        return Some((a.len() as u64, 0, a.len() as f64));
    }
    let mut agreed = 0;
    let mut diff = 0.0;
    for (x, y) in a.iter().zip(&b) {
        agreed += u64::from(x.get("label").is_some() && x.get("label") == y.get("label"));
        let (px, py) =
            (x.get("probabilities").and_then(|p| p.as_object()), y.get("probabilities").and_then(|p| p.as_object()));
        if let (Some(px), Some(py)) = (px, py) {
            let n = px.len().max(1) as f64;
            let d: f64 = px
                .iter()
                .map(|(k, v)| (v.as_f64().unwrap_or(0.0) - py.get(k).and_then(|w| w.as_f64()).unwrap_or(0.0)).abs())
                .sum();
            diff += (d / n).min(1.0);
        }
    }
    Some((a.len() as u64, agreed, diff))
}

async fn forward(
    mut parts: hyper::http::request::Parts,
    body: Bytes,
    backend: &str,
    client: &Client<HttpConnector, Body>,
) -> Result<Response<Body>> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{backend}{path}").parse()?;
    parts.headers.remove(hyper::header::HOST);
    let response = client.request(Request::from_parts(parts, Full::new(body))).await?;
    let (parts, body) = response.into_parts();
    // A backend's answer is bounded as a client's request is: past it, the answer is an error.
    let body = match Limited::new(body, MAX_ANSWER_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            anyhow::bail!("the backend {backend} answered with more than {MAX_ANSWER_BYTES} bytes")
        }
        Err(e) => anyhow::bail!("cannot read the answer of {backend}: {e}"),
    };
    Ok(Response::from_parts(parts, Full::new(body)))
}

async fn admin_api(
    req: Request<Incoming>,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    token: Arc<str>,
    drain: Duration,
) -> Response<Body> {
    if !authorized(&req, &token) {
        return text(StatusCode::UNAUTHORIZED, "the admin API needs the environment's token (Authorization: Bearer …)");
    }
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/backend") => {
            let current = state.backend.lock().unwrap_or_else(|e| e.into_inner()).clone();
            text(StatusCode::OK, &current.unwrap_or_default())
        }
        ("PUT", "/backend") => {
            let body = match read_body(req.into_body()).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            let new = String::from_utf8_lossy(&body).trim().to_string();
            switch(&state, new, drain).await
        }
        ("PUT", "/canary") => {
            let (addr, weight) = match target_and_share(req, 0, "the canary", "a weight").await {
                Ok(parsed) => parsed,
                Err(response) => return response,
            };
            let said = format!("{weight}% of requests go to {addr}");
            *state.canary.lock().unwrap_or_else(|e| e.into_inner()) = Some((addr, weight));
            text(StatusCode::OK, &said)
        }
        ("DELETE", "/canary") => {
            let old = state.canary.lock().unwrap_or_else(|e| e.into_inner()).take();
            let stable = state.backend.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match old.filter(|(c, _)| Some(c) != stable.as_ref()) {
                Some((candidate, _)) => wait_drained(&state, &candidate, drain, "canary").await,
                None => drained(true, "no canary"),
            }
        }
        ("PUT", "/shadow") => {
            let (addr, share) = match target_and_share(req, 1, "the shadow", "a share").await {
                Ok(parsed) => parsed,
                Err(response) => return response,
            };
            let said = format!("{share}% of predictions are mirrored to {addr}");
            *state.shadow.lock().unwrap_or_else(|e| e.into_inner()) = Some((addr, share));
            text(StatusCode::OK, &said)
        }
        ("DELETE", "/shadow") => {
            state.shadow.lock().unwrap_or_else(|e| e.into_inner()).take();
            text(StatusCode::OK, "no shadow")
        }
        ("GET", "/metrics") => {
            let mut r = text(StatusCode::OK, &state.stats.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        ("POST", "/shutdown") => {
            let _ = stop.send(true);
            text(StatusCode::OK, "bye")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "GET /backend, PUT /backend, PUT|DELETE /canary, PUT|DELETE /shadow, GET /metrics, POST /shutdown",
        ),
    }
}

/// A body `host:port PERCENT` with the percentage from `least` to 100, or the 400 to answer.
async fn target_and_share(
    req: Request<Incoming>,
    least: u64,
    what: &str,
    percent: &str,
) -> Result<(String, u64), Response<Body>> {
    let body = read_body(req.into_body()).await?;
    let body = String::from_utf8_lossy(&body);
    let mut words = body.split_whitespace();
    let refused = || {
        text(
            StatusCode::BAD_REQUEST,
            &format!("{what} is host:port and {percent} from {least} to 100, e.g. `127.0.0.1:40123 10`"),
        )
    };
    let (Some(addr), Some(n), None) = (words.next(), words.next(), words.next()) else { return Err(refused()) };
    match (addr.parse::<SocketAddr>(), n.parse::<u64>()) {
        (Ok(_), Ok(n)) if (least..=100).contains(&n) => Ok((addr.to_string(), n)),
        _ => Err(refused()),
    }
}

/// Whether the request carries `token`, compared in constant time.
fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let given = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let given = given.strip_prefix("Bearer ").unwrap_or_default().as_bytes();
    let want = token.as_bytes();
    given.len() == want.len() && given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Points new requests at `new`, then waits for the old backend's requests to finish. A drain
/// that times out still is a switch: the answer says so, with `x-slipway-drained: false`.
async fn switch(state: &State, new: String, drain: Duration) -> Response<Body> {
    if new.parse::<SocketAddr>().is_err() {
        return text(StatusCode::BAD_REQUEST, "the backend must be host:port, e.g. 127.0.0.1:40123");
    }
    let old = state.backend.lock().unwrap_or_else(|e| e.into_inner()).replace(new.clone());
    let Some(old) = old.filter(|o| *o != new) else { return drained(true, "switched") };
    wait_drained(state, &old, drain, "switched from").await
}

/// Waits for the requests given to `old` to finish, up to `drain`.
async fn wait_drained(state: &State, old: &str, drain: Duration, what: &str) -> Response<Body> {
    let counter = state.counter(old);
    let deadline = Instant::now() + drain;
    while counter.load(Ordering::SeqCst) > 0 {
        if Instant::now() > deadline {
            let left = counter.load(Ordering::SeqCst);
            return drained(false, &format!("{what} {old}; {left} request(s) to it still running after {drain:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drained(true, &format!("{what} {old}, drained"))
}

fn drained(done: bool, body: &str) -> Response<Body> {
    let mut r = text(StatusCode::OK, body);
    r.headers_mut()
        .insert(DRAINED_HEADER, hyper::header::HeaderValue::from_static(if done { "true" } else { "false" }));
    r
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r
}
