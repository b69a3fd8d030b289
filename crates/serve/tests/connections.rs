//! Connections after a refusal, over raw TCP so that nothing in a client library hides what the
//! server wrote: a request turned away before its body was read says `Connection: close` and
//! the server closes; a body over the limit gets its 413 even when the client writes the rest
//! of it first, as most clients do; an announced body far over the limit is refused at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::fixture::{self, TestServer};

/// Writes `head` (the request line and headers, without the blank line) for a body of
/// `length` bytes, and returns the stream.
fn open(server: &TestServer, head: &str, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!("{head}\r\nHost: {}\r\nContent-Length: {length}\r\n\r\n", server.addr);
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// Reads the answer to its end (the server must close) and returns its status line, its
/// headers in lower case, and its body.
fn answer(stream: &mut TcpStream) -> (String, String, String) {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("reading the answer: {e}; read so far: {raw:?}"));
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no whole head in {text:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_ascii_lowercase(), body.to_string())
}

#[test]
fn a_request_refused_before_its_body_is_read_closes_its_connection() {
    let server = TestServer::ready(fixture::config(fixture::text_model()));
    // The body is announced but never sent: the server answers without waiting for it.
    let mut stream = open(&server, "POST /predict HTTP/1.1\r\nContent-Type: text/plain", 100);
    let (status, headers, body) = answer(&mut stream);
    assert_eq!(status, "HTTP/1.1 415 Unsupported Media Type");
    assert!(headers.contains("connection: close"), "{headers}");
    assert!(body.contains("Content-Type: application/json"), "{body}");
    // A refusal whose body was read whole keeps the connection for the next request.
    let mut stream = open(&server, "POST /predict HTTP/1.1\r\nContent-Type: application/json", 2);
    stream.write_all(b"{}").unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 400");
    let mut rest = Vec::new();
    let waited = stream.read_to_end(&mut rest).map_err(|e| e.kind());
    let still_open = matches!(waited, Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    assert!(
        still_open,
        "the server closed a connection it could keep ({waited:?}): {}",
        String::from_utf8_lossy(&rest)
    );
    // So does a refusal of an unknown path with a body it never read.
    let mut stream = open(&server, "POST /nowhere HTTP/1.1\r\nContent-Type: application/json", 100);
    let (status, headers, _) = answer(&mut stream);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert!(headers.contains("connection: close"), "{headers}");
    server.stop().unwrap();
}

#[test]
fn a_body_over_the_limit_gets_its_413_after_the_client_writes_the_rest() {
    let server = TestServer::ready(fixture::config(fixture::text_model()));
    let limit = serve::Limits::default().max_body_bytes;
    let length = limit + 64 * 1024;
    let mut stream = open(&server, "POST /predict HTTP/1.1\r\nContent-Type: application/json", length);
    // Past the limit first, then, after the server has seen that, the rest of the body.
    stream.write_all(&vec![b' '; limit + 1]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&vec![b' '; length - limit - 1]).unwrap();
    let (status, headers, body) = answer(&mut stream);
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    assert!(headers.contains("connection: close"), "{headers}");
    assert!(body.contains(&format!("over the limit of {limit} bytes")), "{body}");
    server.stop().unwrap();
}

#[test]
fn a_body_announced_far_over_the_limit_is_refused_before_it_is_sent() {
    let server = TestServer::ready(fixture::config(fixture::text_model()));
    let length = 100 * serve::Limits::default().max_body_bytes;
    for path in ["/predict", "/v2/models/model/infer"] {
        let mut stream = open(&server, &format!("POST {path} HTTP/1.1\r\nContent-Type: application/json"), length);
        let (status, headers, body) = answer(&mut stream);
        assert_eq!(status, "HTTP/1.1 413 Payload Too Large", "{path}");
        assert!(headers.contains("connection: close"), "{path}: {headers}");
        assert!(body.contains("over the limit"), "{path}: {body}");
    }
    server.stop().unwrap();
}
