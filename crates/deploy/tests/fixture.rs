//! Test servers, a load generator, and release candidates built from real models.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use xshell::cmd;

/// A backend that answers every request with `name`, after `delay`; counts finished requests.
pub async fn echo_backend(name: &'static str, delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let counter = done.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let counter = counter.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        counter.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(name))))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (addr, done)
}

/// A webhook that keeps every body posted to it.
pub async fn hook_recorder() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let kept = kept.clone();
                    async move {
                        use http_body_util::BodyExt;
                        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        kept.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from("ok"))))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (addr, bodies)
}

/// Counts of a load run.
#[derive(Debug, Default)]
pub struct Stats {
    pub ok: usize,
    pub failed: usize,
    pub bodies: BTreeSet<String>,
    pub digests: BTreeSet<String>,
    pub failures: Vec<String>,
}

/// Clients sending requests in a loop until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Stats>>,
}

impl Load {
    /// `clients` loops of GET (or POST when `url` ends in /predict) against `url`.
    pub fn start(url: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, url) = (stop.clone(), url.clone());
                tokio::spawn(async move {
                    let mut s = Stats::default();
                    // Bounded: at most 10 minutes of requests, whatever happens.
                    let deadline = std::time::Instant::now() + Duration::from_secs(600);
                    while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                        let (method, body) = if url.ends_with("/predict") {
                            ("POST", Some(r#"{"text":"a good film"}"#.to_string()))
                        } else {
                            ("GET", None)
                        };
                        match deploy::http::send(method, &url, body, Duration::from_secs(10)).await {
                            Ok(r) if r.status == 200 => {
                                s.ok += 1;
                                s.bodies.insert(r.text().chars().take(40).collect());
                                s.digests.extend(r.header("x-model-digest"));
                            }
                            Ok(r) => {
                                s.failed += 1;
                                s.failures.push(format!("HTTP {} {}", r.status, r.text()));
                            }
                            Err(e) => {
                                s.failed += 1;
                                s.failures.push(format!("{e:#}"));
                            }
                        }
                    }
                    s
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the clients and adds up their counts.
    pub async fn stop(self) -> Stats {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Stats::default();
        for t in self.tasks {
            let s = t.await.unwrap();
            total.ok += s.ok;
            total.failed += s.failed;
            total.bodies.extend(s.bodies);
            total.digests.extend(s.digests);
            total.failures.extend(s.failures);
        }
        total
    }
}

pub fn root() -> PathBuf {
    manifest_dir().join("../..")
}

/// The training environment, for ONNX Runtime and for building models.
pub fn train_env() -> PathBuf {
    let env = root().join(".slipway/train-env");
    assert!(
        env.join("bin/python").is_file(),
        "the training environment is missing: run `cargo xtask deps` (or `cargo xtask ci`) first"
    );
    env
}

/// The server and router binaries, built (debug) if needed.
pub fn binaries() -> (PathBuf, PathBuf) {
    let sh = xshell::Shell::new().unwrap();
    sh.change_dir(root());
    cmd!(sh, "cargo build --quiet -p slipway-serve -p slipway-router --bins")
        .run()
        .expect("build slipway-serve and slipway-router");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    (target.join("debug/slipway-serve"), target.join("debug/slipway-router"))
}

/// A model trained on `rows` generated rows; `flip` trains it with every label inverted, so it
/// fails the smoke cases.
pub fn model(dir: &Path, name: &str, rows: usize, flip: bool) -> PathBuf {
    let good = ["wonderful", "moving", "brilliant", "great", "funny", "smart"];
    let bad = ["dull", "lifeless", "boring", "awful", "weak", "mess"];
    let mut csv = String::from("text,label\n");
    for i in 0..rows {
        let fresh = i % 2 == 0;
        let words = if fresh { good } else { bad };
        let label = if fresh != flip { "fresh" } else { "rotten" };
        csv.push_str(&format!("a {} and {} film,{label}\n", words[i % 6], words[(i / 6) % 6]));
    }
    let data = dir.join(format!("{name}.csv"));
    std::fs::write(&data, csv).unwrap();
    let out = dir.join(format!("{name}.onnx"));
    let (python, script) = (train_env().join("bin/python"), root().join("training/build_test_models.py"));
    let sh = xshell::Shell::new().unwrap();
    cmd!(sh, "{python} {script} --kind text --data {data} --out {out}").quiet().ignore_stderr().run().unwrap();
    out
}

/// The ONNX Runtime library of the training environment.
pub fn onnxruntime() -> PathBuf {
    model::RuntimeSearch::new(None, &[train_env()]).find().unwrap()
}

/// A release candidate of `model` on the given server binary.
pub fn candidate(serve: &Path, router: &Path, model: &Path, sha: &str) -> deploy::Candidate {
    deploy::Candidate {
        files: vec![
            ("slipway-serve".into(), serve.to_path_buf()),
            ("slipway-router".into(), router.to_path_buf()),
            ("libonnxruntime.so".into(), onnxruntime()),
            ("model.onnx".into(), model.to_path_buf()),
        ],
        image_digest: None,
        image_config: None,
        tags: vec![format!("sha-{sha}")],
        config_digest: "c0".repeat(32),
        git_sha: sha.into(),
    }
}

/// This crate's directory, from cargo when the test or bench runs: a binary in a target
/// directory that clones share may have been compiled in another clone.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from)
}

/// A free port for an environment's stable address, below the kernel's ephemeral range: a
/// deploy stops the router on it and starts another, and in that moment a port from `bind(0)`
/// (every server a test starts gets one) could be handed out again. Ports here never are.
pub fn stable_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low = range.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()).unwrap_or(32768);
    let (first, span) = (10_000u32, low.saturating_sub(10_000).max(1));
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..span {
        let port = first + (seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span);
        if let Ok(port) = u16::try_from(port)
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port from {first} below the ephemeral range ({range})");
}

/// Kills whatever the test started, even when it fails half-way.
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for entry in walkdir::WalkDir::new(self.0.join(".slipway/deploy")).into_iter().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let sh = xshell::Shell::new().unwrap();
            if let Some(pid) = v["pid"].as_u64().or_else(|| v["handle"]["pid"].as_u64()) {
                let pid = pid.to_string();
                let _ = xshell::cmd!(sh, "kill -9 {pid}").quiet().ignore_stderr().run();
            }
            if let Some(id) = v["handle"]["container"].as_str() {
                let _ = xshell::cmd!(sh, "docker rm -f {id}").quiet().ignore_stdout().ignore_stderr().run();
            }
        }
    }
}
