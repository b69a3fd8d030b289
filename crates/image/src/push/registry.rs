//! A small client for the OCI Distribution API v2: blob HEAD and monolithic upload, manifest
//! PUT, and the authentication dance (Basic, or Bearer tokens from the challenge's realm).

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, Response, StatusCode};

use super::auth::{Challenge, Credentials, parse_challenge};
use super::reference::Reference;
use crate::error::PushError;

/// One repository on one registry, with the authorization earned so far.
pub(crate) struct Registry {
    client: Client,
    base: String,
    host: String,
    repository: String,
    credentials: Credentials,
    authorization: Option<String>,
}

impl Registry {
    pub(crate) fn new(reference: &Reference, credentials: Credentials) -> Result<Registry, PushError> {
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .user_agent(concat!("slipway-image/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PushError::Unreachable { url: reference.base_url(), detail: chain(&e) })?;
        Ok(Registry {
            client,
            base: reference.base_url(),
            host: reference.host.clone(),
            repository: reference.repository.clone(),
            credentials,
            authorization: None,
        })
    }

    /// Whether the registry already holds the blob.
    pub(crate) async fn has_blob(&mut self, digest: &str) -> Result<bool, PushError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let response = self.send(|c| c.head(&url)).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.protocol(&format!("HEAD blob {digest}"), response).await),
        }
    }

    /// Uploads a blob in one piece: POST for an upload URL, then PUT the bytes there.
    pub(crate) async fn upload_blob(&mut self, digest: &str, bytes: Vec<u8>) -> Result<(), PushError> {
        let url = format!("{}/v2/{}/blobs/uploads/", self.base, self.repository);
        let response = self.send(|c| c.post(&url).header(reqwest::header::CONTENT_LENGTH, 0)).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.protocol("start a blob upload", response).await);
        }
        let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let upload =
            if location.starts_with("http") { location.to_owned() } else { format!("{}{location}", self.base) };
        let put = |c: &Client| {
            let body = bytes.clone();
            c.put(&upload).query(&[("digest", digest)]).header(CONTENT_TYPE, "application/octet-stream").body(body)
        };
        let response = self.send(put).await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.protocol(&format!("upload blob {digest}"), response).await);
        }
        Ok(())
    }

    /// PUTs a manifest under `reference` (a tag or a digest).
    pub(crate) async fn put_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), PushError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let response = self.send(|c| c.put(&url).header(CONTENT_TYPE, media_type).body(bytes.to_vec())).await?;
        if response.status() == StatusCode::CREATED {
            return Ok(());
        }
        let status = response.status().as_u16();
        Err(PushError::ManifestRejected {
            registry: self.host.clone(),
            reference: format!("{}:{reference}", self.repository),
            status,
            message: error_message(response).await,
        })
    }

    /// Sends a request, answering up to two challenges (the token scope may widen from pull to
    /// push); a request still refused after that is an authorization error.
    async fn send(&mut self, make: impl Fn(&Client) -> RequestBuilder) -> Result<Response, PushError> {
        for attempt in 0..3 {
            let mut request = make(&self.client).build().map_err(|e| self.unreachable(&e))?;
            // Credentials go to the registry's host only: never to another host that an
            // upload's Location names (object storage takes presigned URLs, not passwords).
            if let Some(value) = &self.authorization
                && self.is_registry(request.url())
                && let Ok(value) = reqwest::header::HeaderValue::from_str(value)
            {
                request.headers_mut().insert(AUTHORIZATION, value);
            }
            let response = self.client.execute(request).await.map_err(|e| self.unreachable(&e))?;
            let status = response.status();
            if status == StatusCode::FORBIDDEN || (status == StatusCode::UNAUTHORIZED && attempt == 2) {
                return Err(self.unauthorized(response).await);
            }
            if status != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let header = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let Some(challenge) = parse_challenge(header) else { return Err(self.unauthorized(response).await) };
            let before = self.authorization.clone();
            self.authorize(challenge).await?;
            if self.authorization == before {
                return Err(self.unauthorized(response).await);
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    async fn authorize(&mut self, challenge: Challenge) -> Result<(), PushError> {
        self.authorization = match (challenge, &self.credentials) {
            (Challenge::Basic, Credentials::Anonymous) => None,
            (Challenge::Basic, Credentials::Basic { user, password }) => Some(basic(user, password)),
            (Challenge::Bearer { realm, service, scope }, _) => Some(self.token(&realm, service, scope).await?),
        };
        Ok(())
    }

    /// Fetches a Bearer token from the challenge's realm, asking for push rights as well.
    async fn token(&self, realm: &str, service: Option<String>, scope: Option<String>) -> Result<String, PushError> {
        let mut query: Vec<(&str, String)> = service.into_iter().map(|s| ("service", s)).collect();
        query.extend(scope.map(|s| ("scope", s)));
        query.push(("scope", format!("repository:{}:pull,push", self.repository)));
        let mut request = self.client.get(realm).query(&query);
        // The password goes to the registry's own host, or to another only over https.
        let realm_url = reqwest::Url::parse(realm).ok();
        let trusted = realm_url.is_some_and(|u| self.is_registry(&u) || u.scheme() == "https");
        if let Credentials::Basic { user, password } = &self.credentials
            && trusted
        {
            request = request.header(AUTHORIZATION, basic(user, password));
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if !response.status().is_success() {
            return Err(self.unauthorized(response).await);
        }
        let body = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let token = body.get("token").or_else(|| body.get("access_token")).and_then(|t| t.as_str());
        let token = token.ok_or_else(|| PushError::Protocol {
            registry: self.host.clone(),
            what: format!("a token from {realm}"),
            status: 200,
            message: "the answer holds no token".into(),
        })?;
        Ok(format!("Bearer {token}"))
    }

    /// Whether `url` is on the registry's host (a token service often has a port of its own).
    fn is_registry(&self, url: &reqwest::Url) -> bool {
        reqwest::Url::parse(&self.base).is_ok_and(|base| base.host().is_some() && base.host() == url.host())
    }

    fn unreachable(&self, e: &reqwest::Error) -> PushError {
        PushError::Unreachable { url: self.base.clone(), detail: chain(e) }
    }

    async fn unauthorized(&self, response: Response) -> PushError {
        let status = response.status().as_u16();
        let message = error_message(response).await;
        let detail = if message.is_empty() { String::new() } else { format!(": {message}") };
        PushError::Unauthorized { registry: self.host.clone(), who: self.credentials.who(), status, detail }
    }

    async fn protocol(&self, what: &str, response: Response) -> PushError {
        let status = response.status().as_u16();
        PushError::Protocol {
            registry: self.host.clone(),
            what: what.into(),
            status,
            message: error_message(response).await,
        }
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// The registry's `{"errors":[{"code","message","detail"}]}` as one line, or the raw body.
async fn error_message(response: Response) -> String {
    let body = response.text().await.unwrap_or_default();
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
        return body.trim().chars().take(500).collect();
    };
    let errors = json.get("errors").and_then(|e| e.as_array()).cloned().unwrap_or_default();
    let line = |e: &serde_json::Value| {
        let field = |k: &str| e.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        let head = [field("code"), field("message")].into_iter().flatten().collect::<Vec<_>>().join(": ");
        match field("detail") {
            Some(detail) if !matches!(detail.as_str(), "null" | "{}" | "[]" | "") => format!("{head} ({detail})"),
            _ => head,
        }
    };
    errors.iter().map(line).collect::<Vec<_>>().join("; ")
}

/// An error and its causes, which is where reqwest says "connection refused".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
