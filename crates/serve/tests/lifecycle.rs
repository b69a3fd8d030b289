//! The server's life: readiness before and after loading, graceful shutdown with a request in
//! flight, the drain timeout, and the real binary's signals and exit codes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::{self, Binary, TestServer, get, post_json};

#[test]
fn readyz_is_503_until_the_model_is_loaded() {
    let config = fixture::config(fixture::text_model());
    let server = TestServer::serve_only(config.clone());
    let (ready, predict) = (server.url("/readyz"), server.url("/predict"));
    let health = get(&server.url("/healthz"));
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    assert_eq!(health.header("x-model-version"), None, "no model, no model headers");
    let loading = get(&ready);
    assert_eq!((loading.status, loading.json()), (503, json!({ "ready": false, "state": "loading" })));
    let early = post_json(&predict, &json!({ "text": "good" }));
    assert_eq!(early.status, 503);
    assert!(early.json()["error"].as_str().unwrap().contains("poll /readyz"), "{}", early.body);

    server.app.set_failed("the model is broken".to_string());
    let failed = get(&ready);
    let want = json!({ "ready": false, "state": "failed", "error": "the model is broken" });
    assert_eq!((failed.status, failed.json()), (503, want));

    server.app.set_ready(serve::Loaded::load(&config).unwrap());
    assert_eq!(get(&ready).status, 200);
    assert_eq!(post_json(&predict, &json!({ "text": "good" })).status, 200);
    server.stop().unwrap();
}

/// Opens a connection and sends a `/predict` request's headers and the first half of its body.
fn start_slow_request(server: &TestServer) -> (TcpStream, &'static [u8]) {
    let body: &'static [u8] = br#"{"text": "a great and moving film"}"#;
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..10]).unwrap();
    // The server counts a request in flight from its headers on; the scrape counts itself too.
    let metrics = server.url("/metrics");
    fixture::poll("the slow request to reach the server", || {
        get(&metrics).body.contains("slipway_requests_in_flight 2")
    });
    (stream, &body[10..])
}

#[test]
fn shutdown_finishes_an_in_flight_request() {
    let mut server = TestServer::ready(fixture::config(fixture::text_model()));
    let (mut stream, rest) = start_slow_request(&server);
    server.signal_stop();
    let addr = server.addr;
    fixture::poll("the listener to close", || TcpStream::connect(addr).is_err());
    stream.write_all(rest).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\"label\":\"fresh\""), "{answer}");
    server.join().unwrap();
}

#[test]
fn shutdown_gives_up_on_a_stuck_request_after_the_drain_timeout() {
    let mut config = fixture::config(fixture::text_model());
    config.drain_timeout = Duration::from_millis(200);
    let mut server = TestServer::ready(config);
    let (_stuck, _) = start_slow_request(&server);
    let started = Instant::now();
    server.signal_stop();
    server.join().unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn the_binary_stops_on_sigterm_and_sigint_with_exit_0() {
    let model = fixture::text_model().to_str().unwrap();
    for signal in ["TERM", "INT"] {
        let binary = Binary::start(&["--model", model, "--listen", "127.0.0.1:0", "--sessions", "1"], &[]);
        let first = binary.line();
        let addr = first.strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {first}"));
        assert!(addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"), "{first}");
        let readyz = format!("http://{addr}/readyz");
        fixture::poll("the binary's model to load", || get(&readyz).status == 200);
        let answer = post_json(&format!("http://{addr}/predict"), &json!({ "text": "good" }));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let (sh, pid) = (xshell::Shell::new().unwrap(), binary.child.id().to_string());
        xshell::cmd!(sh, "kill -{signal} {pid}").run().unwrap();
        let (code, rest) = binary.wait();
        assert_eq!(code, Some(0), "SIG{signal}; stderr:\n{rest}");
        assert!(rest.contains(&format!("SIG{signal}: finishing in-flight requests")), "{rest}");
    }
}

#[test]
fn the_binary_exits_2_when_the_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let model = fixture::text_model().to_str().unwrap();
    let (code, stderr) = Binary::start(&["--model", model, "--listen", &addr], &[]).wait();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.starts_with(&format!("error: cannot listen on {addr}: Address already in use")), "{stderr}");
    assert!(stderr.contains("help: another process may hold the port"), "{stderr}");
}

#[test]
fn the_binary_exits_2_when_the_model_fails_to_load() {
    let binary = Binary::start(&["--model", "/nowhere/model.onnx", "--listen", "127.0.0.1:0"], &[]);
    assert!(binary.line().starts_with("listening on 127.0.0.1:"));
    let (code, stderr) = binary.wait();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("error: model file /nowhere/model.onnx does not exist"), "{stderr}");
    assert!(stderr.contains("help: pass the model file with --model or SLIPWAY_MODEL"), "{stderr}");
}

#[test]
fn the_binary_reads_its_settings_from_the_environment() {
    let model = fixture::text_model().to_str().unwrap();
    let env = [("SLIPWAY_MODEL", model), ("SLIPWAY_LISTEN", "127.0.0.1:0"), ("SLIPWAY_MODEL_VERSION", "env-v7")];
    let binary = Binary::start(&[], &env);
    let first = binary.line();
    let addr = first.strip_prefix("listening on 127.0.0.1:").unwrap_or_else(|| panic!("first line: {first}"));
    let readyz = format!("http://127.0.0.1:{addr}/readyz");
    fixture::poll("the binary's model to load", || get(&readyz).status == 200);
    assert_eq!(get(&readyz).json()["model_version"], "env-v7");
    let (sh, pid) = (xshell::Shell::new().unwrap(), binary.child.id().to_string());
    xshell::cmd!(sh, "kill -TERM {pid}").run().unwrap();
    assert_eq!(binary.wait().0, Some(0));
}
