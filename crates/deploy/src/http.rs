//! A small HTTP/1.1 client for smoke tests, the router's admin port and webhooks.

use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A response: status, headers, body.
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: hyper::HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

/// The largest answer read.
pub const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// Sends `method url` with `body` (JSON when given), waiting at most `timeout`.
pub async fn send(method: &str, url: &str, body: Option<String>, timeout: Duration) -> Result<Reply> {
    send_as(method, url, body, None, timeout).await
}

/// [`send`] with `Authorization: Bearer TOKEN` when a token is given.
pub async fn send_as(
    method: &str,
    url: &str,
    body: Option<String>,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Reply> {
    send_within(Request { method, url, body, token }, timeout, MAX_REPLY_BYTES).await
}

/// What to send.
pub struct Request<'a> {
    /// The method.
    pub method: &'a str,
    /// The URL.
    pub url: &'a str,
    /// A JSON body.
    pub body: Option<String>,
    /// A bearer token.
    pub token: Option<&'a str>,
}

/// Sends `request` and reads its whole answer, within `timeout` for both and `limit` bytes.
pub async fn send_within(request: Request<'_>, timeout: Duration, limit: usize) -> Result<Reply> {
    let url = request.url;
    tokio::time::timeout(timeout, exchange(request, limit))
        .await
        .map_err(|_| anyhow::anyhow!("no whole answer from {url} within {timeout:?}"))?
}

async fn exchange(request: Request<'_>, limit: usize) -> Result<Reply> {
    let Request { method, url, body, token } = request;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).context("a valid request")?;
    let response = client.request(req).await.with_context(|| format!("cannot reach {url}"))?;
    let (parts, body) = response.into_parts();
    // Servers under test, routers and webhooks are not trusted to answer in bounded size.
    let body = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            anyhow::bail!("the answer from {url} is over {limit} bytes")
        }
        Err(e) => return Err(anyhow::anyhow!("the answer from {url} broke off: {e}")),
    };
    Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
}
