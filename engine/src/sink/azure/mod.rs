//! Azure Blob Storage block blobs (and Azurite), on Microsoft's maintained `azure_storage_blob` 1.x.
//!
//! Targets are `az://container/prefix`. The account, its endpoint and its credential come from the
//! workload (`target.account`, `target.endpoint`), `AZURE_STORAGE_CONNECTION_STRING` (including
//! `UseDevelopmentStorage=true`), or `AZURE_STORAGE_ACCOUNT` with `AZURE_STORAGE_KEY` or
//! `AZURE_STORAGE_SAS_TOKEN`; the Azurite development account needs nothing.
//!
//! The SDK authenticates with Entra ID tokens only (it has no shared-key credential, and refuses a
//! token credential over plain http, which is how Azurite listens). An account key is therefore turned
//! into an account SAS here — HMAC-SHA256 over the documented string-to-sign — and every request
//! carries it in its URL, exactly as a SAS given by the user would be. Nothing else bypasses the SDK.
//!
//! A blob is written as blocks staged in parallel (the shared part machinery of [`super::cloud`]) and
//! made visible by one Put Block List at `finish`; small blobs go in one Put Blob. Blocks staged by a
//! failed or interrupted run are never committed, so no blob that looks complete is left — and when
//! no blob of that name existed, the abort discards them too (see [`AzureStore`]'s `abort`). Blocks carry Azure's CRC64 (`x-ms-content-crc64`) when
//! checksums are on.

mod credential;

use credential::resolve;
pub use credential::{account_sas, Credential};

use super::cloud::{root_cause, Body, CloudOptions, CloudSink, Location, PartLimits, PartTag, Store};
use super::{Listing, ObjectInfo};
use crate::error::{Error, Failure, Result};
use crate::keys::Keys;
use crate::object::identity::{Identity, AZURE_META_KEY};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RequestContent, RetryOptions, StatusCode, Url};
use azure_core::time::{Duration as AzDuration, OffsetDateTime};
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlobContainerClientListBlobsOptions, BlockBlobClientCommitBlockListOptions,
    BlockBlobClientCommitBlockListResultHeaders, BlockBlobClientStageBlockOptions, BlockBlobClientUploadOptions,
    BlockLookupList, ListBlobsIncludeItem,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use bytes::Bytes;
use std::future::Future;
use std::num::NonZero;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Azure's block blob rules (service version 2019-12-12 and later).
pub const LIMITS: PartLimits = PartLimits {
    // Blocks have no minimum size; the pool's buffer size is the natural one.
    min_part: 1,
    max_part: 4000 << 20,
    max_parts: 50_000,
    max_object: 50_000 * (4000 << 20),
    max_single: 5000 << 20,
};

/// The REST API version sent by default: one the service and current Azurite both accept (the
/// SDK's own default is newer than Azurite 3.35 knows). `target.api_version` overrides it.
pub const API_VERSION: &str = "2025-11-05";

/// Azurite's well-known development account (published in Microsoft's documentation).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const DEV_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// What a workload can say about an Azure target besides its URI.
#[derive(Clone, Debug, Default)]
pub struct AzureOptions {
    /// The blob service endpoint (`https://acct.blob.core.windows.net`, or Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1`); default from the connection string or the account.
    pub endpoint: Option<String>,
    /// The storage account name.
    pub account: Option<String>,
    pub api_version: Option<String>,
    /// Retries per request after the first attempt (exponential backoff); default 3.
    pub retries: Option<u32>,
    /// Create the container when it does not exist (instead of failing).
    pub create_container: bool,
    /// A credential instead of the environment (for embedding and tests; workload files
    /// deliberately cannot hold secrets).
    pub credential: Option<Credential>,
    pub cloud: CloudOptions,
}

/// The keys a workload's `[target.azure]` (or `[target]`, for an `az://` URI) takes.
pub const KEYS: &[&str] = &[
    "endpoint",
    "account",
    "api_version",
    "retries",
    "create_container",
    "block_size",
    "multipart_threshold",
    "concurrency",
    "checksum",
];

impl AzureOptions {
    /// A workload's Azure settings.
    pub fn from_keys(keys: &mut Keys) -> Result<AzureOptions> {
        let account = keys.string("account")?;
        if let Some(a) = &account {
            let ok = (3..=24).contains(&a.len()) && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !ok {
                let why = format!("'{a}' is not a storage account name (3 to 24 lowercase letters and digits)");
                return Err(keys.invalid("account", why));
            }
        }
        let api_version = keys.string("api_version")?;
        if let Some(v) = &api_version {
            if !(v.len() == 10 && v.chars().all(|c| c.is_ascii_digit() || c == '-')) {
                return Err(keys.invalid("api_version", format!("'{v}' is not a date like 2025-11-05")));
            }
        }
        Ok(AzureOptions {
            endpoint: super::cloud::http_url(keys, "endpoint")?,
            account,
            api_version,
            retries: keys.integer("retries", 0..=100)?.map(|r| r as u32),
            create_container: keys.flag("create_container")?.unwrap_or(false),
            credential: None,
            cloud: CloudOptions::from_keys(keys, &LIMITS, "block_size")?,
        })
    }
}

/// An `az://container/prefix` target and how to reach it.
#[derive(Clone, Debug)]
pub struct AzureTarget {
    pub container: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
    pub options: AzureOptions,
}

impl AzureTarget {
    /// Parses `az://container/prefix` (the prefix may be empty).
    pub fn new(uri: &str, options: AzureOptions) -> Result<AzureTarget> {
        let bad = |why: &str| Error::InvalidValue { key: "target.uri", value: uri.into(), reason: why.into() };
        let rest = uri.strip_prefix("az://").ok_or_else(|| bad("is not an az:// URI"))?;
        let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if container.len() < 3
            || container.len() > 63
            || !container.chars().all(valid)
            || container.starts_with('-')
            || container.ends_with('-')
            || container.contains("--")
        {
            return Err(bad("needs a container name of 3 to 63 lowercase letters, digits or single inner '-'"));
        }
        Ok(AzureTarget { container: container.into(), prefix: prefix.trim_matches('/').into(), options })
    }
}

pub struct AzureStore {
    container: BlobContainerClient,
    /// The container and prefix.
    loc: Location,
    account: String,
    /// Where requests go, for messages.
    endpoint: String,
    checksum: bool,
    create_container: bool,
}

/// Opens an `az://` target: resolves the account, then checks the container can be reached.
pub fn open(target: &AzureTarget) -> Result<CloudSink<AzureStore>> {
    let opts = target.options.clone();
    let (container_name, prefix) = (target.container.clone(), target.prefix.clone());
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let account = resolve(&opts, &env, OffsetDateTime::now_utc())?;
    let bad_endpoint =
        |why: String| Error::InvalidValue { key: "target.endpoint", value: account.endpoint.clone(), reason: why };
    let mut url = Url::parse(&account.endpoint).map_err(|e| bad_endpoint(format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(bad_endpoint("is not an http(s):// URL".into()));
    }
    url.path_segments_mut()
        .map_err(|_| bad_endpoint("cannot hold a path".into()))?
        .pop_if_empty()
        .push(&container_name);
    url.set_query(Some(&account.sas).filter(|s| !s.is_empty()).map(|s| s.as_str()));
    let retry = ExponentialRetryOptions {
        max_retries: opts.retries.unwrap_or(3),
        initial_delay: AzDuration::milliseconds(200),
        max_delay: AzDuration::seconds(8),
        max_total_elapsed: AzDuration::seconds(120),
    };
    let options = BlobContainerClientOptions {
        client_options: ClientOptions { retry: RetryOptions::exponential(retry), ..Default::default() },
        version: opts.api_version.clone().unwrap_or_else(|| API_VERSION.into()),
    };
    let rt = super::cloud::runtime()?;
    // The SDK builds its HTTP client inside the runtime it will run on.
    let container = rt
        .block_on(async { BlobContainerClient::new(url, None, Some(options)) })
        .map_err(|e| Error::sink(format!("az://{container_name}"), e.to_string()))?;
    let store = AzureStore {
        container,
        loc: Location::new("az", container_name, prefix),
        account: account.name,
        endpoint: account.endpoint,
        checksum: opts.cloud.checksum,
        create_container: opts.create_container,
    };
    CloudSink::new(store, rt, opts.cloud)
}

/// A multi-buffer body as the SDK's seekable stream (read out in order; rewound for a retry).
#[derive(Clone, Debug)]
struct ChunkStream {
    chunks: Vec<Bytes>,
    len: u64,
    at: usize,
    offset: usize,
}

impl futures_io::AsyncRead for ChunkStream {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let mut n = 0;
        while n < buf.len() && self.at < self.chunks.len() {
            let (at, offset) = (self.at, self.offset);
            let c = &self.chunks[at][offset..];
            let k = c.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&c[..k]);
            n += k;
            self.offset += k;
            if self.offset == self.chunks[at].len() {
                self.at += 1;
                self.offset = 0;
            }
        }
        Poll::Ready(Ok(n))
    }
}

impl azure_core::stream::SeekableStream for ChunkStream {
    fn reset<'a, 'b>(&'a mut self) -> Pin<Box<dyn Future<Output = azure_core::Result<()>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        self.at = 0;
        self.offset = 0;
        Box::pin(async { Ok(()) })
    }

    fn len(&self) -> Option<u64> {
        Some(self.len)
    }

    fn buffer_size(&self) -> usize {
        1 << 20
    }
}

/// A body as SDK request content: one buffer is lent as it is; several are streamed from the buffers
/// (the SDK copies those through its own small buffers — only blocks larger than a pool buffer, which
/// the layout avoids unless asked, take that path).
fn content<T>(body: Body) -> RequestContent<Bytes, T> {
    match body.single() {
        Some(bytes) => bytes.into(),
        None => {
            let s = ChunkStream { chunks: body.chunks().to_vec(), len: body.len(), at: 0, offset: 0 };
            azure_core::http::Body::from(Box::new(s) as Box<dyn azure_core::stream::SeekableStream>).into()
        }
    }
}

/// The service's `<Message>` from an error body, first line only.
fn service_message(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let start = text.find("<Message>")? + "<Message>".len();
    let end = text[start..].find("</Message>")? + start;
    Some(text[start..end].lines().next().unwrap_or("").trim().to_string())
}

/// The kind of an SDK failure, from the HTTP status or the transport.
fn failure(e: &azure_core::Error) -> Failure {
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => match u16::from(*status) {
            404 => Failure::NotFound,
            401 | 403 => Failure::Denied,
            507 => Failure::NoSpace,
            _ => Failure::Other,
        },
        ErrorKind::Connection | ErrorKind::Io => Failure::Unreachable,
        _ => Failure::Other,
    }
}

impl AzureStore {
    fn blob(&self, name: &str) -> azure_storage_blob::BlobClient {
        self.container.blob_client(&self.loc.key(name))
    }

    /// One line for an SDK error: the service's code and message, or why the server was not reached.
    fn explain(&self, e: &azure_core::Error) -> String {
        match e.kind() {
            ErrorKind::HttpResponse { status, error_code, raw_response } => {
                let code = error_code.clone().unwrap_or_else(|| format!("HTTP {}", u16::from(*status)));
                let message = raw_response.as_ref().and_then(|r| service_message(r.body()));
                match (*status, message) {
                    (_, Some(m)) if m.contains("x-ms-content-crc64") => format!(
                        "{code}: the server refuses block checksums (Azurite: start it with --loose, or set \
                         target.checksum = false)"
                    ),
                    (StatusCode::Forbidden, m) => format!(
                        "access denied (HTTP 403 {code}; check the account key or SAS){}",
                        m.map(|m| format!(": {m}")).unwrap_or_default()
                    ),
                    (_, Some(m)) if !m.is_empty() => format!("{code}: {m}"),
                    _ => code,
                }
            }
            ErrorKind::Connection | ErrorKind::Io => format!("cannot reach {}: {}", self.endpoint, root_cause(e)),
            _ => root_cause(e),
        }
    }

    fn fail(&self, name: &str, op: &str, e: azure_core::Error) -> Error {
        let message = format!("{op}: {}", self.explain(&e));
        Error::storage(failure(&e), self.loc.url(name), message, Some(std::sync::Arc::new(e)))
    }
}

impl Store for AzureStore {
    fn engine(&self) -> &'static str {
        "azure"
    }

    fn describe(&self) -> String {
        self.loc.describe()
    }

    fn limits(&self) -> PartLimits {
        LIMITS
    }

    fn leftovers(&self, _upload: &str) -> String {
        "its staged blocks stay invisible until the blob is next written, or 7 days".into()
    }

    async fn check(&self) -> Result<()> {
        match self.container.get_properties(None).await {
            Ok(_) => Ok(()),
            Err(e) if self.create_container && e.http_status() == Some(StatusCode::NotFound) => {
                match self.container.create(None).await {
                    Ok(_) => Ok(()),
                    // Created meanwhile by someone else: as good.
                    Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
                    Err(e) => {
                        let message = format!("create container: {}", self.explain(&e));
                        Err(Error::storage(failure(&e), self.describe(), message, Some(std::sync::Arc::new(e))))
                    }
                }
            }
            Err(e) => {
                let message = match e.http_status() {
                    Some(StatusCode::NotFound) => format!(
                        "container '{}' does not exist in account '{}' at {} (target.create_container = true \
                         creates it)",
                        self.loc.root, self.account, self.endpoint
                    ),
                    Some(StatusCode::Forbidden) => format!(
                        "access to container '{}' denied (HTTP 403): check the account key or SAS for '{}'",
                        self.loc.root, self.account
                    ),
                    _ => self.explain(&e),
                };
                Err(Error::storage(failure(&e), self.describe(), message, Some(std::sync::Arc::new(e))))
            }
        }
    }

    async fn put(&self, name: &str, body: Body, identity: &str) -> Result<()> {
        // One Put Blob whatever the size (the SDK would otherwise cut it into blocks itself).
        let options = BlockBlobClientUploadOptions {
            partition_size: NonZero::new(body.len().max(1)),
            parallel: NonZero::new(1),
            metadata: Some(metadata(identity)),
            ..Default::default()
        };
        self.blob(name)
            .block_blob_client()
            .upload(content(body), Some(options))
            .await
            .map_err(|e| self.fail(name, "Put Blob", e))?;
        Ok(())
    }

    async fn start(&self, _name: &str, _identity: &str) -> Result<String> {
        // Nothing to open: blocks are staged under ids unique to this upload, so blocks left by an
        // earlier, failed attempt can never be committed by mistake.
        Ok(azure_core::Uuid::new_v4().simple().to_string()[..16].to_string())
    }

    async fn put_part(&self, name: &str, upload: &str, number: u32, body: Body) -> Result<PartTag> {
        // Every block id of a blob must have the same length: 16 + 1 + 6 characters.
        let id = format!("{upload}-{number:06}");
        let options = BlockBlobClientStageBlockOptions {
            transactional_content_crc64: self.checksum.then(|| body.crc64().to_le_bytes().to_vec()),
            ..Default::default()
        };
        let len = body.len();
        self.blob(name)
            .block_blob_client()
            .stage_block(id.as_bytes(), len, content(body), Some(options))
            .await
            .map_err(|e| self.fail(name, &format!("Put Block {number}"), e))?;
        Ok(PartTag { number, tag: id, crc32c: None })
    }

    async fn complete(&self, name: &str, _upload: &str, parts: Vec<PartTag>, identity: &str) -> Result<()> {
        let list = BlockLookupList {
            latest: Some(parts.into_iter().map(|p| p.tag.into_bytes()).collect()),
            ..Default::default()
        };
        let list = list.try_into().map_err(|e| self.fail(name, "Put Block List", e))?;
        let options =
            BlockBlobClientCommitBlockListOptions { metadata: Some(metadata(identity)), ..Default::default() };
        self.blob(name)
            .block_blob_client()
            .commit_block_list(list, Some(options))
            .await
            .map_err(|e| self.fail(name, "Put Block List", e))?;
        Ok(())
    }

    async fn abort(&self, name: &str, _upload: &str) -> Result<()> {
        // Staged blocks cannot be deleted on their own, but any commit discards them. When no blob of
        // this name exists, committing an empty list (only if none exists) and deleting that empty
        // blob leaves nothing at all. When one does (an earlier run's), it is left as it was: its
        // staged blocks are invisible, dropped by the next commit or by the service within 7 days.
        let blob = self.blob(name);
        let options = BlockBlobClientCommitBlockListOptions { if_none_match: Some("*".into()), ..Default::default() };
        let empty: RequestContent<BlockLookupList, _> =
            BlockLookupList { latest: Some(Vec::new()), ..Default::default() }
                .try_into()
                .map_err(|e| self.fail(name, "Put Block List", e))?;
        let etag = match blob.block_blob_client().commit_block_list(empty, Some(options)).await {
            Ok(r) => r.etag().ok().flatten(),
            Err(e) if matches!(e.http_status(), Some(StatusCode::Conflict | StatusCode::PreconditionFailed)) => {
                return Ok(())
            }
            Err(e) => return Err(self.fail(name, "discard staged blocks: Put Block List", e)),
        };
        let options = BlobClientDeleteOptions { if_match: etag, ..Default::default() };
        match blob.delete(Some(options)).await {
            Ok(_) => Ok(()),
            // Replaced or removed by someone else meanwhile: theirs now.
            Err(e) if matches!(e.http_status(), Some(StatusCode::NotFound | StatusCode::PreconditionFailed)) => Ok(()),
            Err(e) => Err(self.fail(name, "discard staged blocks: Delete Blob", e)),
        }
    }

    async fn uploads(&self, _name: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.blob(name).delete(None).await.map_err(|e| self.fail(name, "Delete Blob", e))?;
        Ok(())
    }

    async fn head(&self, name: &str) -> Result<ObjectInfo> {
        match self.blob(name).get_properties(None).await {
            Ok(r) => Ok(ObjectInfo {
                size: r.content_length().ok().flatten().unwrap_or(0),
                identity: r.metadata().ok().as_ref().and_then(stored_identity),
            }),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                Err(Error::storage(Failure::NotFound, self.loc.url(name), "no such blob", None))
            }
            Err(e) => Err(self.fail(name, "Get Blob Properties", e)),
        }
    }

    async fn list(&self, prefix: &str, stop: &(dyn Fn() -> bool + Sync)) -> Result<Listing> {
        use futures_util::StreamExt;
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(self.loc.key(prefix)),
            include: Some(vec![ListBlobsIncludeItem::Metadata]),
            ..Default::default()
        };
        let mut items = self.container.list_blobs(Some(options)).map_err(|e| self.fail(prefix, "List Blobs", e))?;
        let mut found = Listing::default();
        let mut looked = 0u64;
        while let Some(item) = items.next().await {
            looked += 1;
            if looked.is_multiple_of(256) && stop() {
                return Err(Error::Cancelled);
            }
            let item = item.map_err(|e| self.fail(prefix, "List Blobs", e))?;
            // Only the engine's blobs: those carrying an identity.
            let ours = item.metadata.as_ref().and_then(|m| m.values.as_ref()).and_then(stored_identity).is_some();
            if ours {
                found.count += 1;
                found.bytes += item.properties.and_then(|p| p.content_length).unwrap_or(0);
            }
        }
        Ok(found)
    }

    async fn read(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let options = BlobClientDownloadOptions {
            range: Some((offset..offset + (buf.len() as u64).max(1)).into()),
            parallel: NonZero::new(1),
            ..Default::default()
        };
        let r = self.blob(name).download(Some(options)).await.map_err(|e| self.fail(name, "Get Blob", e))?;
        // Straight into the caller's buffer (the range is never longer than it).
        r.body.collect_into(buf).await.map_err(|e| self.fail(name, "Get Blob", e))
    }
}

/// A blob's user metadata carrying `identity`.
fn metadata(identity: &str) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([(AZURE_META_KEY.to_string(), identity.to_string())])
}

/// The identity in a blob's user metadata, if any (Azure keeps metadata names' case as given but
/// compares them without it).
fn stored_identity(m: &std::collections::HashMap<String, String>) -> Option<Identity> {
    m.iter().find(|(k, _)| k.eq_ignore_ascii_case(AZURE_META_KEY)).and_then(|(_, v)| Identity::parse(v.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_container_and_prefix() {
        let parse = |u: &str| AzureTarget::new(u, AzureOptions::default()).map(|t| (t.container, t.prefix));
        assert_eq!(parse("az://ckpt").unwrap(), ("ckpt".into(), "".into()));
        assert_eq!(parse("az://ckpt-01/a/b/").unwrap(), ("ckpt-01".into(), "a/b".into()));
        for bad in ["az://", "az://ab", "az://Upper/x", "s3://abc", "az://a_b/c", "az://-abc", "az://a--b"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crc64_is_azure_storage_crc64() {
        // Microsoft's own implementation (PyPI azure-storage-extensions, checksums.crc64.compute)
        // gives 0xAE8B14860A799888 for "123456789" — the CRC-64/NVME check value.
        let body = Body::new(vec![Bytes::from_static(b"1234"), Bytes::from_static(b"56789")]);
        assert_eq!(body.crc64(), 0xAE8B_1486_0A79_9888);
    }
}
