//! The router switches backends under load without failing a request, drains the old one, and
//! keeps its admin API and its in-flight counts to itself: a caller without the token is refused,
//! and a client that never sends its body holds no switch up.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deploy::http;

use crate::fixture::{Load, echo_backend};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

async fn router() -> (SocketAddr, SocketAddr) {
    router_draining(deploy::router::DRAIN_TIMEOUT).await
}

async fn router_draining(drain: Duration) -> (SocketAddr, SocketAddr) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let options =
        deploy::router::Options { drain_timeout: drain, ..deploy::router::Options::new(any, any, None, TOKEN.into()) };
    tokio::spawn(deploy::router::run(options, move |a| {
        let _ = tx.send((a.public, a.admin));
    }));
    rx.await.unwrap()
}

async fn admin(method: &str, url: &str, body: Option<String>) -> http::Reply {
    http::send_as(method, url, body, Some(TOKEN), Duration::from_secs(60)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_under_load_fails_no_request_and_drains_the_old_backend() {
    let (public, port) = router().await;
    let none = http::send("GET", &format!("http://{public}/x"), None, Duration::from_secs(2)).await.unwrap();
    assert_eq!(none.status, 503, "no backend yet");
    let (a, _) = echo_backend("a", Duration::ZERO).await;
    let (b, _) = echo_backend("b", Duration::ZERO).await;
    let (slow, slow_done) = echo_backend("slow", Duration::from_millis(700)).await;
    let admin_url = format!("http://{port}/backend");
    let put = |to: SocketAddr| admin("PUT", &admin_url, Some(to.to_string()));
    assert_eq!(put(a).await.status, 200);

    let load = Load::start(format!("http://{public}/x"), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(put(b).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(put(a).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = load.stop().await;
    println!("router switch under load: {} requests, {} failed", stats.ok + stats.failed, stats.failed);
    assert_eq!(stats.failed, 0);
    assert!(stats.ok > 50, "the load ran: {stats:?}");
    assert!(stats.bodies.contains("a") && stats.bodies.contains("b"), "both backends answered: {stats:?}");

    // A request in flight on the old backend finishes before the switch returns.
    assert_eq!(put(slow).await.status, 200);
    let slow_url = format!("http://{public}/slow");
    let in_flight = tokio::spawn(async move { http::send("GET", &slow_url, None, Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let switched = put(b).await;
    assert_eq!(switched.status, 200, "{}", switched.text());
    assert_eq!(switched.header(deploy::router::DRAINED_HEADER).as_deref(), Some("true"));
    assert!(slow_done.load(Ordering::SeqCst) >= 1, "the switch returned before the old backend drained");
    assert_eq!(in_flight.await.unwrap().unwrap().text(), "slow");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_port_refuses_nonsense() {
    let (_, port) = router().await;
    let bad = admin("PUT", &format!("http://{port}/backend"), Some("not an address".into())).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("host:port"));
    let unknown = admin("GET", &format!("http://{port}/nope"), None).await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_refuses_a_caller_without_the_token() {
    let (_, port) = router().await;
    let (a, _) = echo_backend("a", Duration::ZERO).await;
    let url = format!("http://{port}/backend");
    for token in [None, Some("wrong"), Some("0123456789abcdef0123456789abcdeX")] {
        let r = http::send_as("PUT", &url, Some(a.to_string()), token, Duration::from_secs(2)).await.unwrap();
        assert_eq!(r.status, 401, "token {token:?}");
        let r = http::send_as("POST", &format!("http://{port}/shutdown"), None, token, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(r.status, 401, "token {token:?}");
    }
    assert_eq!(admin("GET", &url, None).await.text(), "", "nothing was switched");
}

/// A client that sends a request's headers and never its body is not in flight: a switch does
/// not wait for it, and it is cut off by the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_without_its_body_holds_no_switch_up() {
    let (public, port) = router().await;
    let (a, _) = echo_backend("a", Duration::ZERO).await;
    let (b, _) = echo_backend("b", Duration::ZERO).await;
    let url = format!("http://{port}/backend");
    admin("PUT", &url, Some(a.to_string())).await;
    let mut stuck = std::net::TcpStream::connect(public).unwrap();
    let head = format!("POST /predict HTTP/1.1\r\nHost: {public}\r\nContent-Length: 1000\r\n\r\n");
    stuck.write_all(head.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let switched = admin("PUT", &url, Some(b.to_string())).await;
    assert_eq!(switched.header(deploy::router::DRAINED_HEADER).as_deref(), Some("true"), "{}", switched.text());
    assert!(started.elapsed() < Duration::from_secs(2), "the switch waited {:?}", started.elapsed());
    let cut_off = tokio::task::spawn_blocking(move || {
        stuck.set_read_timeout(Some(deploy::router::BODY_TIMEOUT + Duration::from_secs(3))).unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stuck, &mut answer).map(|_| answer)
    });
    let answer = cut_off.await.unwrap().expect("the router closed the connection");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A switch whose old backend is still busy when the router stops waiting is still a switch:
/// new requests go to the new backend, and the answer says the drain did not finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_that_times_out_completes_the_switch_with_a_warning() {
    let (public, port) = router_draining(Duration::from_millis(300)).await;
    let (slow, _) = echo_backend("slow", Duration::from_secs(3)).await;
    let (b, _) = echo_backend("b", Duration::ZERO).await;
    let url = format!("http://{port}/backend");
    admin("PUT", &url, Some(slow.to_string())).await;
    let long =
        tokio::spawn(
            async move { http::send("GET", &format!("http://{public}/x"), None, Duration::from_secs(10)).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let switched = admin("PUT", &url, Some(b.to_string())).await;
    assert_eq!(switched.status, 200);
    assert_eq!(switched.header(deploy::router::DRAINED_HEADER).as_deref(), Some("false"));
    assert!(switched.text().contains("1 request(s) to it still running after 300ms"), "{}", switched.text());
    assert_eq!(admin("GET", &url, None).await.text(), b.to_string(), "the switch is made");
    let now = http::send("GET", &format!("http://{public}/x"), None, Duration::from_secs(2)).await.unwrap();
    assert_eq!(now.text(), "b");
    assert_eq!(long.await.unwrap().unwrap().text(), "slow", "the old request still finished");
}

/// A canary gets exactly its share of every hundred requests,
/// the metrics count both backends apart, nonsense is refused, and clearing the canary sends
/// everything back.
#[tokio::test(flavor = "multi_thread")]
async fn a_canary_gets_its_share_and_the_metrics_tell_the_backends_apart() {
    let (public, port) = router().await;
    let (stable, _) = echo_backend("stable", Duration::ZERO).await;
    let (canary, _) = echo_backend("canary", Duration::ZERO).await;
    assert_eq!(admin("PUT", &format!("http://{port}/backend"), Some(stable.to_string())).await.status, 200);
    for bad in ["", "127.0.0.1:1", "127.0.0.1:1 101", "nohost 10", "127.0.0.1:1 ten", "127.0.0.1:1 10 extra"] {
        assert_eq!(admin("PUT", &format!("http://{port}/canary"), Some(bad.into())).await.status, 400, "{bad:?}");
    }
    assert_eq!(admin("PUT", &format!("http://{port}/canary"), Some(format!("{canary} 30"))).await.status, 200);
    let mut got = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let r = http::send("GET", &format!("http://{public}/x"), None, Duration::from_secs(5)).await.unwrap();
        *got.entry(r.text()).or_insert(0) += 1;
    }
    assert_eq!((got["canary"], got["stable"]), (60, 140), "{got:?}");
    let metrics = admin("GET", &format!("http://{port}/metrics"), None).await.text();
    let reading = deploy::canary::Reading::parse(&metrics);
    let before = deploy::canary::Reading::default();
    assert_eq!(reading.since(&before, &canary.to_string()).requests, 60, "{metrics}");
    assert_eq!(reading.since(&before, &stable.to_string()).requests, 140);
    assert!(metrics.contains(&format!("slipway_router_requests_total{{backend=\"{canary}\",role=\"canary\"}} 60")));
    assert!(metrics.contains("# TYPE slipway_router_request_duration_seconds histogram"));
    let cleared = admin("DELETE", &format!("http://{port}/canary"), None).await;
    assert_eq!((cleared.status, cleared.header(deploy::router::DRAINED_HEADER).as_deref()), (200, Some("true")));
    for _ in 0..20 {
        let r = http::send("GET", &format!("http://{public}/x"), None, Duration::from_secs(5)).await.unwrap();
        assert_eq!(r.text(), "stable");
    }
}

#[test]
fn comparing_answers_counts_rows_labels_and_probability_differences() {
    use deploy::router::compare;
    let a = r#"{"label":"fresh","probabilities":{"fresh":0.8,"rotten":0.2}}"#;
    let b = r#"{"label":"rotten","probabilities":{"fresh":0.4,"rotten":0.6}}"#;
    assert_eq!(compare(a.as_bytes(), a.as_bytes()), Some((1, 1, 0.0)));
    let (rows, agreed, diff) = compare(a.as_bytes(), b.as_bytes()).unwrap();
    assert_eq!((rows, agreed), (1, 0));
    assert!((diff - 0.4).abs() < 1e-9, "{diff}");
    let batch = |x: &str, y: &str| format!(r#"{{"predictions":[{x},{y}]}}"#);
    assert_eq!(compare(batch(a, b).as_bytes(), batch(a, b).as_bytes()), Some((2, 2, 0.0)));
    assert_eq!(
        compare(batch(a, b).as_bytes(), a.as_bytes()).map(|c| c.1),
        Some(0),
        "rows that do not line up agree on nothing"
    );
    assert_eq!(compare(b"not json", a.as_bytes()), None);
    assert_eq!(compare(a.as_bytes(), br#"{"predictions": 3}"#), None);
}

/// A backend that answers every request with `bytes` bytes.
async fn huge_backend(bytes: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = hyper::body::Bytes::from(vec![b'x'; bytes]);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(body))) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_past_the_bound_is_a_backend_error_and_the_router_goes_on() {
    let (public, port) = router().await;
    let admin_url = format!("http://{port}/backend");
    let limit = deploy::router::MAX_ANSWER_BYTES;
    let huge = huge_backend(limit + 1).await;
    assert_eq!(admin("PUT", &admin_url, Some(huge.to_string())).await.status, 200);
    let r = http::send("GET", &format!("http://{public}/x"), None, Duration::from_secs(30)).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains(&format!("more than {limit} bytes")), "{}", r.text());
    // Just under the bound passes whole.
    let big = huge_backend(limit - 1).await;
    assert_eq!(admin("PUT", &admin_url, Some(big.to_string())).await.status, 200);
    let r = http::send("GET", &format!("http://{public}/x"), None, Duration::from_secs(30)).await.unwrap();
    assert_eq!((r.status, r.body.len()), (200, limit - 1));
    let metrics = admin("GET", &format!("http://{port}/metrics"), None).await.text();
    let errors = metrics
        .lines()
        .find(|l| l.starts_with("slipway_router_errors_total") && l.contains(&huge.to_string()))
        .unwrap_or_default()
        .to_string();
    assert!(errors.ends_with(" 1"), "the oversized answer counts as the backend's error: {errors}");
}
