//! What requests can make the real server binary do, measured from the outside: its peak memory
//! (`VmHWM` in `/proc/PID/status`) under the request that once took it to 4 GB and under the
//! worst requests within the limits, `/healthz` answering throughout, slow clients cut off by the
//! timeouts without holding up the others, and load beyond the limit shed with 503.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::{self, Binary, get, post};

/// The ceiling the issue sets for the server's peak resident memory.
const PEAK_RSS_LIMIT_KIB: u64 = 300 * 1024;

/// Starts the binary on the shipped-size model and waits until it is ready; returns it and its
/// address.
fn start(extra: &[&str]) -> (Binary, String) {
    let model = fixture::large_text_model().to_str().unwrap();
    let mut args = vec!["--model", model, "--listen", "127.0.0.1:0", "--sessions", "2"];
    args.extend(extra);
    let binary = Binary::start(&args, &[]);
    let first = binary.line();
    let addr = first.strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {first}")).to_string();
    let readyz = format!("http://{addr}/readyz");
    fixture::poll("the model to load", || get(&readyz).status == 200);
    (binary, addr)
}

/// `VmHWM` of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Polls `/healthz` every 20 ms until stopped; counts the answers that were not a quick 200.
struct HealthWatch {
    stop: Arc<AtomicBool>,
    bad: Arc<Mutex<Vec<String>>>,
    checks: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthWatch {
    fn start(addr: &str) -> HealthWatch {
        let (stop, bad, checks) =
            (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicUsize::new(0)));
        let url = format!("http://{addr}/healthz");
        let (s, b, c) = (stop.clone(), bad.clone(), checks.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let started = Instant::now();
                let status = get(&url).status;
                let took = started.elapsed();
                c.fetch_add(1, Ordering::SeqCst);
                if status != 200 || took > Duration::from_secs(2) {
                    b.lock().unwrap().push(format!("HTTP {status} in {took:?}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        HealthWatch { stop, bad, checks, thread: Some(thread) }
    }

    /// Stops and returns (checks made, the bad ones).
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        (self.checks.load(Ordering::SeqCst), self.bad.lock().unwrap().clone())
    }
}

fn predict(addr: &str, body: &serde_json::Value) -> fixture::Reply {
    post(&format!("http://{addr}/predict"), "application/json", body.to_string().as_bytes())
}

#[test]
fn hostile_requests_keep_the_server_small_and_answering() {
    let (binary, addr) = start(&[]);
    let pid = binary.child.id();
    let watch = HealthWatch::start(&addr);
    // The request from the issue: one text of 500,000 words and 255 tiny ones, 1.0 MB.
    let attack = json!({ "texts": std::iter::once("a ".repeat(500_000)).chain(std::iter::repeat_n("x".to_string(), 255)).collect::<Vec<_>>() });
    assert!(attack.to_string().len() < 1024 * 1024, "the attack fits the body limit");
    let refused = predict(&addr, &attack);
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert!(refused.body.contains("text 0 is 1000000 characters long; the limit is 20000"), "{}", refused.body);
    // The worst within the limits: texts at the length cap, as many as the body holds, each of
    // the most tokens that many characters can make; then one such text with 1,023 tiny ones,
    // the padding pattern of the attack.
    let cap = serve::Limits::default().max_text_chars;
    let long = "a ".repeat(cap / 2);
    let many = json!({ "texts": vec![long.clone(); (1024 * 1024 - 100) / (cap + 4)] });
    let padded =
        json!({ "texts": std::iter::once(long).chain(std::iter::repeat_n("x".to_string(), 1023)).collect::<Vec<_>>() });
    for (name, body) in [("texts at the cap", &many), ("one long text and 1,023 short", &padded)] {
        assert!(body.to_string().len() <= 1024 * 1024, "{name} fits the body limit");
        let started = Instant::now();
        let answer = predict(&addr, body);
        assert_eq!(answer.status, 200, "{name}: {}", &answer.body[..answer.body.len().min(300)]);
        eprintln!("{name}: {} bytes answered in {:?}", body.to_string().len(), started.elapsed());
    }
    let (checks, bad) = watch.finish();
    let peak = peak_rss_kib(pid);
    eprintln!("peak RSS {} MiB; /healthz checked {checks} times during the requests", peak / 1024);
    assert!(bad.is_empty(), "/healthz did not answer promptly: {bad:?}");
    assert!(checks > 0);
    assert!(peak < PEAK_RSS_LIMIT_KIB, "peak RSS {peak} KiB is over {PEAK_RSS_LIMIT_KIB} KiB");
    stop(binary);
}

/// Sends part of a request and then nothing: `headers_only` sends whole headers of a POST whose
/// body never comes; otherwise the headers stop half-way.
fn slow_client(addr: &str, headers_only: bool) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head =
        format!("POST /predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n");
    let sent = if headers_only { format!("{head}\r\n") } else { head[..head.len() / 2].to_string() };
    stream.write_all(sent.as_bytes()).unwrap();
    stream
}

/// Whether the server closed `stream` (after an answer, or without one) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = Vec::new();
    // Read to the end: an error from the timeout means the connection is still open.
    stream.read_to_end(&mut buf).is_ok()
}

#[test]
fn slow_clients_are_cut_off_and_do_not_stop_the_others() {
    let (binary, addr) = start(&[]);
    let mut slow: Vec<(TcpStream, bool)> = (0..64).map(|i| (slow_client(&addr, i % 2 == 0), i % 2 == 0)).collect();
    // Meanwhile every other client is served as usual.
    let started = Instant::now();
    for _ in 0..20 {
        let answer = predict(&addr, &json!({ "text": "a wonderful film" }));
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(get(&format!("http://{addr}/healthz")).status, 200);
    eprintln!("20 predictions beside 64 slow clients in {:?}", started.elapsed());
    let limits = serve::Limits::default();
    let patience = limits.header_timeout.max(limits.body_timeout) + Duration::from_secs(5);
    for (stream, headers_only) in &mut slow {
        assert!(closed_within(stream, patience), "a slow client (whole headers: {headers_only}) was not cut off");
    }
    stop(binary);
}

#[test]
fn load_beyond_the_limit_is_shed_with_retry_after_while_health_answers() {
    let (binary, addr) = start(&["--max-requests", "2"]);
    // Two requests hold both slots, waiting for bodies that come slowly.
    let mut holders: Vec<TcpStream> = (0..2).map(|_| slow_client(&addr, true)).collect();
    let metrics = format!("http://{addr}/metrics");
    fixture::poll("both slots to be taken", || get(&metrics).body.contains("slipway_requests_in_flight 3"));
    let shed = predict(&addr, &json!({ "text": "good" }));
    assert_eq!(shed.status, 503, "{}", shed.body);
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert!(shed.body.contains("the server is busy"), "{}", shed.body);
    assert_eq!(get(&format!("http://{addr}/healthz")).status, 200, "health is never shed");
    assert_eq!(get(&metrics).status, 200, "nor are metrics");
    for h in &mut holders {
        h.write_all(&[b' '; 100]).unwrap();
    }
    fixture::poll("a slot to free up", || predict(&addr, &json!({ "text": "good" })).status == 200);
    drop(holders);
    stop(binary);
}

fn stop(binary: Binary) {
    let (sh, pid) = (xshell::Shell::new().unwrap(), binary.child.id().to_string());
    xshell::cmd!(sh, "kill -TERM {pid}").run().unwrap();
    let (code, rest) = binary.wait();
    assert_eq!(code, Some(0), "{rest}");
}
