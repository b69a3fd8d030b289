//! An S3 remote through `aws-sdk-s3`, for AWS and for S3-compatible servers.
//!
//! Credentials are taken explicitly (environment, DVC's `config.local`, or a profile's static keys
//! in the AWS shared files) and never through the full default chain, so a machine without any
//! fails at once with a message naming the variables to set, instead of waiting on the EC2
//! metadata service. The client is configured here, without the SDK's configuration loader
//! (`aws-config`, which brings an STS client into every build).

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls;

use crate::config::S3Settings;
use crate::error::StoreError;
use crate::md5::Md5;
use crate::remote::Remote;

/// A bucket and a key prefix on an S3 endpoint.
pub struct S3Remote {
    client: Client,
    bucket: String,
    prefix: String,
    describe: String,
}

impl S3Remote {
    /// A client for `settings`; fails at once when no credentials can be found.
    pub fn connect(settings: &S3Settings) -> Result<S3Remote, StoreError> {
        let describe = settings.url();
        let credentials =
            credentials(settings)?.ok_or_else(|| StoreError::NoCredentials { remote: describe.clone() })?;
        // rustls on ring: one TLS stack, and no C toolchain needed for aws-lc.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .http_client(http)
            .credentials_provider(credentials)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .read_timeout(std::time::Duration::from_secs(60))
                    .build(),
            );
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        let client = Client::from_conf(config.build());
        Ok(S3Remote { client, bucket: settings.bucket.clone(), prefix: settings.prefix.clone(), describe })
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) }
    }

    fn classify<E>(&self, key: &str, err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let remote = self.describe.clone();
        let detail = DisplayErrorContext(&err).to_string();
        if matches!(err, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)) {
            return StoreError::Unreachable { remote, detail };
        }
        let status = err.raw_response().map(|r| r.status().as_u16());
        match (status, err.code()) {
            (_, Some("NoSuchBucket")) => StoreError::NoBucket { remote },
            (_, Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied")) | (Some(401 | 403), _) => {
                StoreError::Denied { remote, detail: err.message().unwrap_or("access denied").to_string() }
            }
            (_, Some("NoSuchKey")) | (Some(404), _) => StoreError::Missing { key: key.to_string(), remote },
            (Some(s), _) if s >= 500 => StoreError::Unreachable { remote, detail },
            _ => StoreError::Other(anyhow::anyhow!("{key} on {remote}: {detail}")),
        }
    }
}

fn credentials(settings: &S3Settings) -> Result<Option<SharedCredentialsProvider>, StoreError> {
    let (id, secret, token) = match (&settings.keys, &settings.profile) {
        (Some((id, secret)), _) => (id.clone(), secret.clone(), settings.session_token.clone()),
        (None, Some(profile)) => match crate::aws_profile::keys(&settings.shared_files, profile) {
            Ok(Some(keys)) => (keys.id, keys.secret, keys.token),
            Ok(None) => return Ok(None),
            Err(e) => return Err(StoreError::Other(anyhow::anyhow!("{}: {e}", settings.url()))),
        },
        (None, None) => return Ok(None),
    };
    Ok(Some(SharedCredentialsProvider::new(Credentials::new(id, secret, token, None, "slipway"))))
}

#[async_trait]
impl Remote for S3Remote {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let head = self.client.head_object().bucket(&self.bucket).key(self.full_key(key)).send().await;
        match head {
            Ok(_) => Ok(true),
            Err(e) => match self.classify(key, e) {
                StoreError::Missing { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn get(&self, key: &str, dest: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<(Md5, u64), StoreError> {
        let resp = self.client.get_object().bucket(&self.bucket).key(self.full_key(key)).send().await;
        let mut body = resp.map_err(|e| self.classify(key, e))?.body;
        let mut file = crate::md5::BlockingWriter::new(dest);
        loop {
            let chunk = body.try_next().await.map_err(|e| StoreError::Unreachable {
                remote: self.describe.clone(),
                detail: format!("download of {key} broke off: {}", DisplayErrorContext(&e)),
            })?;
            let Some(chunk) = chunk else { break };
            progress(chunk.len() as u64);
            file.write(&chunk).await.map_err(|e| anyhow::anyhow!("cannot write {}: {e}", dest.display()))?;
        }
        Ok(file.finish().await.map_err(|e| anyhow::anyhow!("cannot write {}: {e}", dest.display()))?)
    }

    async fn read_small(&self, key: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        let resp = self.client.get_object().bucket(&self.bucket).key(self.full_key(key)).send().await;
        let resp = resp.map_err(|e| self.classify(key, e))?;
        let too_large = || StoreError::TooLarge { key: key.into(), remote: self.describe.clone(), limit };
        if resp.content_length().is_some_and(|n| u64::try_from(n).unwrap_or(0) > limit) {
            return Err(too_large());
        }
        let (mut body, mut bytes) = (resp.body, Vec::new());
        // The length is the server's word; what comes is counted too, and the rest is never read.
        while let Some(chunk) = body.try_next().await.map_err(|e| StoreError::Unreachable {
            remote: self.describe.clone(),
            detail: format!("download of {key} broke off: {}", DisplayErrorContext(&e)),
        })? {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    async fn put(&self, key: &str, src: &Path) -> Result<(), StoreError> {
        let body =
            ByteStream::from_path(src).await.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", src.display()))?;
        let put = self.client.put_object().bucket(&self.bucket).key(self.full_key(key)).body(body).send().await;
        put.map_err(|e| self.classify(key, e))?;
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .if_none_match("*")
            .body(ByteStream::from(bytes))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) => Ok(false),
            Err(e) => Err(self.classify(key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full = self.full_key(prefix);
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&full).into_paginator().send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.classify(prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let rel = if self.prefix.is_empty() {
                    key
                } else {
                    key.strip_prefix(&format!("{}/", self.prefix)).unwrap_or(key)
                };
                keys.push(rel.to_string());
            }
        }
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let deleted = self.client.delete_object().bucket(&self.bucket).key(self.full_key(key)).send().await;
        deleted.map_err(|e| self.classify(key, e))?;
        Ok(())
    }

    async fn modified(&self, key: &str) -> Result<Option<std::time::SystemTime>, StoreError> {
        let head = self.client.head_object().bucket(&self.bucket).key(self.full_key(key)).send().await;
        let head = match head {
            Ok(head) => head,
            Err(e) => {
                return match self.classify(key, e) {
                    StoreError::Missing { .. } => Ok(None),
                    other => Err(other),
                };
            }
        };
        let at =
            head.last_modified().ok_or_else(|| anyhow::anyhow!("{} gave no Last-Modified for {key}", self.describe))?;
        let secs = u64::try_from(at.secs()).map_err(|_| anyhow::anyhow!("{key} was last modified before 1970"))?;
        Ok(Some(std::time::UNIX_EPOCH + std::time::Duration::new(secs, at.subsec_nanos())))
    }
}
