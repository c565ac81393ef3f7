//! Amazon S3 and S3-compatible stores (MinIO, Ceph RGW, VAST, moto…), on the official `aws-sdk-s3`.
//!
//! Targets are `s3://bucket/prefix`. Credentials and region come from the standard AWS chain
//! (environment, profiles, SSO, container and instance roles); the endpoint from the workload or
//! `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`. Path-style addressing is used automatically for an IP
//! address or `localhost` endpoint (where virtual-hosted buckets cannot resolve) and can be forced
//! either way. Parts carry CRC32C checksums the server verifies; bodies are sent unsigned (the
//! checksum already protects them) so no SHA-256 pass over the data is needed. Part sizing,
//! concurrency and abort-on-failure live in [`super::cloud`].

use super::cloud::{root_cause, Body, CloudOptions, CloudSink, Location, PartLimits, PartTag, Store};
use super::{Listing, ObjectInfo};
use crate::error::{Error, Failure, Result};
use crate::keys::Keys;
use crate::object::identity::{Identity, META_KEY};
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine as _;
use std::time::Duration;

/// S3's upload rules (the largest object is what 10,000 parts of the largest size allow; the service
/// decides the rest).
pub const LIMITS: PartLimits = PartLimits {
    min_part: 5 << 20,
    max_part: 5 << 30,
    max_parts: 10_000,
    max_object: 10_000 * (5 << 30),
    max_single: 5 << 30,
};

/// What a workload can say about an S3 target besides its URI.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible store; default from the environment, else AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Force path-style (`true`) or virtual-hosted (`false`) addressing; default: path-style for an
    /// IP or localhost endpoint.
    pub path_style: Option<bool>,
    /// Retries per request after the first attempt (the SDK's standard retry with backoff).
    pub retries: Option<u32>,
    /// Access key id and secret, instead of the AWS chain (for embedding and tests; workload files
    /// deliberately cannot hold secrets).
    pub credentials: Option<(String, String)>,
    pub cloud: CloudOptions,
}

pub struct S3Store {
    client: Client,
    /// The bucket and prefix.
    loc: Location,
    /// Where requests go, for messages.
    endpoint: String,
    checksum: bool,
}

/// The keys a workload's `[target.s3]` (or `[target]`, for an `s3://` URI) takes.
pub const KEYS: &[&str] =
    &["endpoint", "region", "path_style", "retries", "part_size", "multipart_threshold", "concurrency", "checksum"];

/// An `s3://bucket/prefix` target and how to reach it.
#[derive(Clone, Debug)]
pub struct S3Target {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
    pub options: S3Options,
}

impl S3Options {
    /// A workload's S3 settings.
    pub fn from_keys(keys: &mut Keys) -> Result<S3Options> {
        Ok(S3Options {
            endpoint: super::cloud::http_url(keys, "endpoint")?,
            region: keys.string("region")?,
            path_style: keys.flag("path_style")?,
            retries: keys.integer("retries", 0..=100)?.map(|r| r as u32),
            credentials: None,
            cloud: CloudOptions::from_keys(keys, &LIMITS, "part_size")?,
        })
    }
}

impl S3Target {
    /// Parses `s3://bucket/prefix` (the prefix may be empty).
    pub fn new(uri: &str, options: S3Options) -> Result<S3Target> {
        let bad = |why: &str| Error::InvalidValue { key: "target.uri", value: uri.into(), reason: why.into() };
        let rest = uri.strip_prefix("s3://").ok_or_else(|| bad("is not an s3:// URI"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
            return Err(bad("needs a bucket name of 3 to 63 lowercase letters, digits, '-' or '.'"));
        }
        Ok(S3Target { bucket: bucket.into(), prefix: prefix.trim_matches('/').into(), options })
    }
}

/// The kind of an SDK failure, from the HTTP status or the transport.
fn failure<E>(e: &SdkError<E>) -> Failure {
    match e {
        SdkError::ServiceError(s) => match s.raw().status().as_u16() {
            404 => Failure::NotFound,
            401 | 403 => Failure::Denied,
            507 => Failure::NoSpace,
            _ => Failure::Other,
        },
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Failure::Unreachable,
        _ => Failure::Other,
    }
}

/// Whether an endpoint URL names an IP address or localhost (virtual-hosted buckets cannot work there).
pub fn is_local_endpoint(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host == "localhost" || host.ends_with(".localhost") || host.parse::<std::net::IpAddr>().is_ok()
}

/// Opens an `s3://` target: loads the AWS configuration, then checks the bucket can be reached.
pub fn open(target: &S3Target) -> Result<CloudSink<S3Store>> {
    let opts = target.options.clone();
    let (bucket, prefix) = (target.bucket.clone(), target.prefix.clone());
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let endpoint = opts.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL_S3")).or_else(|| env("AWS_ENDPOINT_URL"));
    let path_style = opts.path_style.unwrap_or_else(|| endpoint.as_deref().is_some_and(is_local_endpoint));
    let rt = super::cloud::runtime()?;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = &opts.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some((id, secret)) = &opts.credentials {
        loader =
            loader.credentials_provider(aws_sdk_s3::config::Credentials::new(id, secret, None, None, "dgen-engine"));
    }
    let sdk = rt.block_on(loader.load());
    // Without credentials every request would fail at signing, which the SDK words as a failure to
    // reach the server: found now, and said as what it is.
    let missing = match sdk.credentials_provider() {
        Some(provider) => {
            use aws_sdk_s3::config::ProvideCredentials;
            rt.block_on(provider.provide_credentials()).err().map(|e| format!(": {e}"))
        }
        None => Some(String::new()),
    };
    if let Some(why) = missing {
        return Err(Error::Denied {
            target: format!("s3://{bucket}"),
            message: format!(
                "no AWS credentials found: looked in the environment (AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY), the profile (AWS_PROFILE in ~/.aws/config and ~/.aws/credentials), web \
                 identity and container credentials, and EC2 instance metadata (IMDS){why}"
            ),
            source: None,
        });
    }
    let mut b = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(path_style)
        // We send our own CRC32C (or none): no second checksum pass by the SDK, none on reads either
        // (`verify` compares every byte anyway).
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(120))
                .build(),
        );
    if sdk.region().is_none() {
        b = b.region(Region::new("us-east-1"));
    }
    if let Some(ep) = &endpoint {
        b = b.endpoint_url(ep);
    }
    if let Some(n) = opts.retries {
        b = b.retry_config(RetryConfig::standard().with_max_attempts(n + 1));
    }
    let region = opts.region.clone().or_else(|| sdk.region().map(|r| r.to_string())).unwrap_or("us-east-1".into());
    let store = S3Store {
        client: Client::from_conf(b.build()),
        loc: Location::new("s3", bucket, prefix),
        endpoint: endpoint.unwrap_or_else(|| format!("AWS S3 ({region})")),
        checksum: opts.cloud.checksum,
    };
    CloudSink::new(store, rt, opts.cloud)
}

fn b64(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

impl S3Store {
    /// One line for an SDK error: the service's code and message, or why the server was not reached.
    fn explain<E>(&self, e: &SdkError<E>) -> String
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match e {
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                let err = s.err();
                let what = match (err.code(), err.message()) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.to_string(),
                    _ => String::new(),
                };
                match status {
                    403 if !what.contains("AccessDenied") => {
                        format!("access denied (HTTP 403; check the credentials) {what}").trim().to_string()
                    }
                    _ if what.is_empty() => {
                        // No error code parsed: show what the server said.
                        let body = s.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                        let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
                        let body: String = body.chars().take(300).collect();
                        format!("HTTP {status} {body}").trim().to_string()
                    }
                    _ => what,
                }
            }
            SdkError::DispatchFailure(d) if d.is_timeout() => format!("timed out reaching {}", self.endpoint),
            SdkError::DispatchFailure(_) => format!("cannot reach {}: {}", self.endpoint, root_cause(e)),
            SdkError::TimeoutError(_) => format!("request to {} timed out", self.endpoint),
            _ => root_cause(e),
        }
    }

    fn fail<E>(&self, name: &str, op: &str, e: SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let message = format!("{op}: {}", self.explain(&e));
        Error::storage(failure(&e), self.loc.url(name), message, Some(std::sync::Arc::new(e)))
    }

    fn stream(body: Body) -> ByteStream {
        match body.single() {
            Some(bytes) => ByteStream::from(bytes),
            None => ByteStream::new(SdkBody::retryable(move || SdkBody::from_body_1_x(body.clone().into_http_body()))),
        }
    }
}

impl Store for S3Store {
    fn engine(&self) -> &'static str {
        "s3"
    }

    fn describe(&self) -> String {
        self.loc.describe()
    }

    fn limits(&self) -> PartLimits {
        LIMITS
    }

    fn leftovers(&self, upload: &str) -> String {
        format!("upload {upload} keeps its parts (and their space) until it is aborted or a lifecycle rule removes it")
    }

    async fn check(&self) -> Result<()> {
        match self.client.head_bucket().bucket(&self.loc.root).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let status = match &e {
                    SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
                    _ => None,
                };
                let message = match status {
                    Some(404) => format!("bucket '{}' does not exist at {}", self.loc.root, self.endpoint),
                    Some(403) => format!(
                        "access to bucket '{}' denied (HTTP 403): check the credentials and their permissions",
                        self.loc.root
                    ),
                    Some(301) => format!("bucket '{}' is in another region: set target.region", self.loc.root),
                    _ => self.explain(&e),
                };
                let class = failure(&e);
                Err(Error::storage(class, self.describe(), message, Some(std::sync::Arc::new(e))))
            }
        }
    }

    async fn put(&self, name: &str, body: Body, identity: &str) -> Result<()> {
        let crc32c = self.checksum.then(|| body.crc32c());
        let req = self
            .client
            .put_object()
            .bucket(&self.loc.root)
            .key(self.loc.key(name))
            .metadata(META_KEY, identity)
            .content_length(body.len() as i64)
            .set_checksum_crc32_c(crc32c.map(b64))
            .body(Self::stream(body));
        req.customize().disable_payload_signing().send().await.map_err(|e| self.fail(name, "PUT", e))?;
        Ok(())
    }

    async fn start(&self, name: &str, identity: &str) -> Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.loc.root)
            .key(self.loc.key(name))
            .metadata(META_KEY, identity)
            .set_checksum_algorithm(self.checksum.then_some(ChecksumAlgorithm::Crc32C))
            .send()
            .await
            .map_err(|e| self.fail(name, "create multipart upload", e))?;
        out.upload_id
            .ok_or_else(|| Error::sink(self.loc.url(name), "create multipart upload: no upload id in the reply"))
    }

    async fn put_part(&self, name: &str, upload: &str, number: u32, body: Body) -> Result<PartTag> {
        let crc32c = self.checksum.then(|| body.crc32c());
        let req = self
            .client
            .upload_part()
            .bucket(&self.loc.root)
            .key(self.loc.key(name))
            .upload_id(upload)
            .part_number(number as i32)
            .content_length(body.len() as i64)
            .set_checksum_crc32_c(crc32c.map(b64))
            .body(Self::stream(body));
        let out = req
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.fail(name, &format!("upload part {number}"), e))?;
        let tag = out
            .e_tag
            .ok_or_else(|| Error::sink(self.loc.url(name), format!("upload part {number}: no ETag in the reply")))?;
        Ok(PartTag { number, tag, crc32c })
    }

    async fn complete(&self, name: &str, upload: &str, parts: Vec<PartTag>, _identity: &str) -> Result<()> {
        let parts = parts
            .into_iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number as i32)
                    .e_tag(p.tag)
                    .set_checksum_crc32_c(p.crc32c.map(b64))
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.loc.root)
            .key(self.loc.key(name))
            .upload_id(upload)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| self.fail(name, "complete multipart upload", e))?;
        Ok(())
    }

    async fn abort(&self, name: &str, upload: &str) -> Result<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.loc.root)
            .key(self.loc.key(name))
            .upload_id(upload)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already gone is what we wanted.
            Err(SdkError::ServiceError(s)) if s.err().code() == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(self.fail(name, "abort multipart upload", e)),
        }
    }

    async fn uploads(&self, name: &str) -> Result<Vec<String>> {
        let key = self.loc.key(name);
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&self.loc.root)
            .prefix(&key)
            .send()
            .await
            .map_err(|e| self.fail(name, "list multipart uploads", e))?;
        Ok(out.uploads().iter().filter(|u| u.key() == Some(key.as_str())).filter_map(|u| u.upload_id.clone()).collect())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.loc.root)
            .key(self.loc.key(name))
            .send()
            .await
            .map_err(|e| self.fail(name, "DELETE", e))?;
        Ok(())
    }

    async fn head(&self, name: &str) -> Result<ObjectInfo> {
        match self.client.head_object().bucket(&self.loc.root).key(self.loc.key(name)).send().await {
            Ok(out) => Ok(ObjectInfo {
                size: out.content_length.unwrap_or(0).max(0) as u64,
                identity: out.metadata().and_then(|m| m.get(META_KEY)).and_then(|v| Identity::parse(v.as_bytes())),
            }),
            Err(SdkError::ServiceError(s)) if s.raw().status().as_u16() == 404 => {
                Err(Error::storage(Failure::NotFound, self.loc.url(name), "no such object", None))
            }
            Err(e) => Err(self.fail(name, "HEAD", e)),
        }
    }

    async fn list(&self, prefix: &str, stop: &(dyn Fn() -> bool + Sync)) -> Result<Listing> {
        use futures_util::StreamExt;
        let mut pages =
            self.client.list_objects_v2().bucket(&self.loc.root).prefix(self.loc.key(prefix)).into_paginator().send();
        let mut found = Listing::default();
        let base = self.loc.key("");
        while let Some(page) = pages.next().await {
            if stop() {
                return Err(Error::Cancelled);
            }
            let page = page.map_err(|e| self.fail(prefix, "LIST", e))?;
            // A listing carries no user metadata: each object's identity takes a HEAD.
            let names: Vec<String> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .map(|k| k.strip_prefix(base.as_str()).unwrap_or(k).to_string())
                .collect();
            // In batches, asking `stop` between them: a page of 1,000 keys is 1,000 HEADs.
            for batch in names.chunks(64) {
                if stop() {
                    return Err(Error::Cancelled);
                }
                let heads = futures_util::stream::iter(batch.to_vec())
                    .map(|n| async move { self.head(&n).await })
                    .buffer_unordered(16);
                let heads: Vec<Result<ObjectInfo>> = heads.collect().await;
                for h in heads {
                    match h {
                        Ok(info) if info.identity.is_some() => {
                            found.count += 1;
                            found.bytes += info.size;
                        }
                        Ok(_) | Err(Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(found)
    }

    async fn read(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let range = format!("bytes={}-{}", offset, offset + (buf.len() as u64).max(1) - 1);
        let mut out = self
            .client
            .get_object()
            .bucket(&self.loc.root)
            .key(self.loc.key(name))
            .range(range)
            .send()
            .await
            .map_err(|e| self.fail(name, "GET", e))?;
        // The body goes straight into the caller's buffer, chunk by chunk: no second copy in memory.
        let mut filled = 0;
        while let Some(chunk) = out.body.next().await {
            let chunk = chunk.map_err(|e| {
                // The reply started and then stopped: the server or the network went away mid-body.
                let why = format!("GET: the connection was lost while the body arrived ({})", root_cause(&e));
                Error::storage(Failure::Unreachable, self.loc.url(name), why, Some(std::sync::Arc::new(e)))
            })?;
            let n = chunk.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
        }
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_bucket_and_prefix() {
        let parse = |u: &str| S3Target::new(u, S3Options::default()).map(|t| (t.bucket, t.prefix));
        assert_eq!(parse("s3://bkt").unwrap(), ("bkt".into(), "".into()));
        assert_eq!(parse("s3://bkt/a/b/").unwrap(), ("bkt".into(), "a/b".into()));
        for bad in ["s3://", "s3://ab", "s3://Upper/x", "file://x", "s3://a_b/c"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_endpoints_are_recognised() {
        for local in ["http://127.0.0.1:9000", "http://localhost:4566/", "http://[::1]:9000", "https://10.1.2.3"] {
            assert!(is_local_endpoint(local), "{local}");
        }
        for remote in ["https://s3.us-east-1.amazonaws.com", "http://minio.lan:9000", "https://storage.googleapis.com"]
        {
            assert!(!is_local_endpoint(remote), "{remote}");
        }
    }
}
