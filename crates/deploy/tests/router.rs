//! The router switches backends under load without failing a request, and drains the old one.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deploy::http;

use crate::fixture::{Load, echo_backend};

async fn router() -> (SocketAddr, SocketAddr) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(deploy::router::run("127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap(), None, move |a| {
        let _ = tx.send((a.public, a.admin));
    }));
    rx.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_under_load_fails_no_request_and_drains_the_old_backend() {
    let (public, admin) = router().await;
    let none = http::send("GET", &format!("http://{public}/x"), None, Duration::from_secs(2)).await.unwrap();
    assert_eq!(none.status, 503, "no backend yet");
    let (a, _) = echo_backend("a", Duration::ZERO).await;
    let (b, _) = echo_backend("b", Duration::ZERO).await;
    let (slow, slow_done) = echo_backend("slow", Duration::from_millis(700)).await;
    let admin_url = format!("http://{admin}/backend");
    let put = |to: SocketAddr| http::send("PUT", &admin_url, Some(to.to_string()), Duration::from_secs(60));
    assert_eq!(put(a).await.unwrap().status, 200);

    let load = Load::start(format!("http://{public}/x"), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(put(b).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(put(a).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = load.stop().await;
    println!("router switch under load: {} requests, {} failed", stats.ok + stats.failed, stats.failed);
    assert_eq!(stats.failed, 0);
    assert!(stats.ok > 50, "the load ran: {stats:?}");
    assert!(stats.bodies.contains("a") && stats.bodies.contains("b"), "both backends answered: {stats:?}");

    // A request in flight on the old backend finishes before the switch returns.
    assert_eq!(put(slow).await.unwrap().status, 200);
    let slow_url = format!("http://{public}/slow");
    let in_flight = tokio::spawn(async move { http::send("GET", &slow_url, None, Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let switched = put(b).await.unwrap();
    assert_eq!(switched.status, 200, "{}", switched.text());
    assert!(slow_done.load(Ordering::SeqCst) >= 1, "the switch returned before the old backend drained");
    assert_eq!(in_flight.await.unwrap().unwrap().text(), "slow");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_port_refuses_nonsense() {
    let (_, admin) = router().await;
    let bad =
        http::send("PUT", &format!("http://{admin}/backend"), Some("not an address".into()), Duration::from_secs(2))
            .await
            .unwrap();
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("host:port"));
    let unknown = http::send("GET", &format!("http://{admin}/nope"), None, Duration::from_secs(2)).await.unwrap();
    assert_eq!(unknown.status, 404);
}
