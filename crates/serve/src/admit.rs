//! Admitting a request to a prediction endpoint: a slot among the requests served at once, the
//! content type, and the body read within its size and time limits.
//!
//! A request turned away before its body is read to the end is answered with
//! `Connection: close`, so that a client never sends its next request into a connection the
//! server is shutting. And a body over the size limit is read on and dropped, up to as much
//! again: a client that writes its whole body before it reads (most do) would otherwise meet a
//! connection reset, which on its side can discard the 413 that was already sent.

use std::pin::Pin;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use tokio::time::Instant;

use crate::app::App;
use crate::predict::ApiError;

/// A request body admitted to a prediction endpoint, read but not parsed; the slot is held
/// until the answer is written.
pub(crate) struct AdmittedBody {
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) slot: tokio::sync::OwnedSemaphorePermit,
}

/// Takes a slot (503 with `Retry-After` when every slot is taken, before a byte of the body is
/// read), checks the content type with `content_type_ok`, and reads the body within the size
/// limit (413) and the time limit (408).
pub(crate) async fn admit(
    req: Request,
    app: &App,
    content_type_ok: fn(Option<&header::HeaderValue>) -> bool,
) -> Result<AdmittedBody, ApiError> {
    let limits = app.limits();
    let deadline = Instant::now() + limits.body_timeout;
    let slot = app.admission().try_acquire_owned().map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is busy; retry after the Retry-After seconds")
            .closing()
    })?;
    if !content_type_ok(req.headers().get(header::CONTENT_TYPE)) {
        let msg = "send the body as Content-Type: application/json";
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, msg).closing());
    }
    let (parts, body) = req.into_parts();
    let too_large = || {
        let msg = format!("the body is over the limit of {} bytes", limits.max_body_bytes);
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, msg).closing()
    };
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > drain_limit(limits.max_body_bytes) as u64) {
        // Too large to be worth reading on: refused at once, the connection closed.
        return Err(too_large());
    }
    match read(body, limits.max_body_bytes, deadline).await {
        Read::Whole(body) => Ok(AdmittedBody { headers: parts.headers, body, slot }),
        Read::TooLarge => Err(too_large()),
        Read::Late => {
            let msg = format!("the body did not arrive within {:?}", limits.body_timeout);
            Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, msg).closing())
        }
        Read::Failed(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")).closing()),
    }
}

/// How many bytes in all a body over `limit` is read to before the server stops reading it.
fn drain_limit(limit: usize) -> usize {
    limit.saturating_mul(2)
}

/// What reading a body came to.
#[derive(Debug)]
enum Read {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// Over the limit; read on and dropped up to `drain_limit` or the deadline.
    TooLarge,
    /// The deadline passed before the body ended.
    Late,
    /// The connection failed while the body was read.
    Failed(String),
}

/// Reads `body` whole if it is at most `limit` bytes and ends before `deadline`.
async fn read(mut body: Body, limit: usize, deadline: Instant) -> Read {
    let mut kept: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let frame = match tokio::time::timeout_at(deadline, next).await {
            Err(_) if seen > limit => return Read::TooLarge,
            Err(_) => return Read::Late,
            Ok(None) if seen > limit => return Read::TooLarge,
            Ok(None) => return Read::Whole(Bytes::from(kept)),
            Ok(Some(Err(_))) if seen > limit => return Read::TooLarge,
            Ok(Some(Err(e))) => return Read::Failed(e.to_string()),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else {
            kept = Vec::new();
            if seen > drain_limit(limit) {
                return Read::TooLarge;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};
    use std::time::Duration;

    use hyper::body::Frame;

    use super::*;

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// 100-byte frames, up to 1,000 and counted, or nothing ever (`stalled`).
    struct Endless {
        stalled: bool,
        polled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl HttpBody for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.stalled {
                return Poll::Pending;
            }
            if self.polled.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1000 {
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[b'x'; 100])))))
        }
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let read = read(Body::from("0123456789"), 10, deadline()).await;
        assert!(matches!(&read, Read::Whole(b) if b.as_ref() == b"0123456789"), "{read:?}");
    }

    #[tokio::test]
    async fn a_body_one_byte_over_the_limit_is_too_large() {
        assert!(matches!(read(Body::from("01234567890"), 10, deadline()).await, Read::TooLarge));
    }

    #[tokio::test]
    async fn a_long_body_is_read_only_to_twice_the_limit() {
        let polled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let read = read(Body::new(Endless { stalled: false, polled: polled.clone() }), 1000, deadline()).await;
        assert!(matches!(read, Read::TooLarge), "{read:?}");
        let frames = polled.load(std::sync::atomic::Ordering::SeqCst);
        assert!(frames <= 21, "{frames} frames of 100 bytes were read for a limit of 1000");
    }

    #[tokio::test]
    async fn a_body_that_stops_coming_is_late() {
        let soon = Instant::now() + Duration::from_millis(50);
        let read = read(Body::new(Endless { stalled: true, polled: Default::default() }), 1000, soon).await;
        assert!(matches!(read, Read::Late), "{read:?}");
    }
}
