//! What object stores share — S3 multipart uploads and Azure block blobs alike: an object is cut into
//! parts within the store's limits, each part is assembled from the pool buffers the executor writes
//! and lent to the HTTP client without a copy, parts go out with a bounded (fixed or adaptive) number
//! of requests in flight across all objects, and the object is committed at `finish`. Anything short
//! of that — a failed part, a failed commit, Ctrl-C — aborts the upload, so no partial object and no
//! orphaned parts remain.
//!
//! A backend implements [`Store`]: a handful of async calls (put, start, put-part, complete, abort,
//! delete, size, read) and its limits, with errors that name the object. Everything else lives here
//! once, so both backends behave the same and pass the same conformance suite.

mod body;
mod layout;
mod limiter;
mod location;
mod writer;

pub use body::{Body, ChunksBody};
pub use layout::PartLimits;
pub use location::Location;

use super::{Capabilities, Listing, ObjectInfo, ObjectReader, ObjectWriter, Sink};
use crate::error::{Error, Failure, Result};
use crate::events::Note;
use crate::keys::Keys;
use crate::object::identity::Identity;
use crate::pool::BufferPool;
use layout::{plan_layout, Layout};
use limiter::Limiter;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::runtime::Runtime;
use writer::{CloudWriter, Patience, Shared};

/// The innermost cause of an error (a refused connection, a DNS failure) without the wrappers' noise.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        last = s.to_string();
        cur = s.source();
    }
    last
}

/// One uploaded part, for the commit.
#[derive(Clone, Debug)]
pub struct PartTag {
    /// 1-based.
    pub number: u32,
    /// The store's token for the part (S3 ETag, Azure block id).
    pub tag: String,
    /// The part's CRC32C, when the store wants it again at the commit (S3).
    pub crc32c: Option<u32>,
}

/// An object store backend. Object names are relative to the target's prefix; errors name the object.
pub trait Store: Send + Sync + 'static {
    /// Short engine name for reports (`s3`, `azure`).
    fn engine(&self) -> &'static str;
    /// The target, for messages (`s3://bucket/prefix`).
    fn describe(&self) -> String;
    fn limits(&self) -> PartLimits;
    /// What becomes of an upload's parts when it cannot be aborted, for the warning.
    fn leftovers(&self, upload: &str) -> String;
    /// Fails fast, before anything is generated, when the bucket or container is missing, the
    /// credentials are refused or the endpoint cannot be reached.
    fn check(&self) -> impl Future<Output = Result<()>> + Send;
    /// Writes a whole object in one request (with the store's checksum, when they are on), with
    /// `identity` in its user metadata.
    fn put(&self, name: &str, body: Body, identity: &str) -> impl Future<Output = Result<()>> + Send;
    /// Starts a multipart upload (with `identity` in its user metadata, where it is given at the
    /// start); returns its id.
    fn start(&self, name: &str, identity: &str) -> impl Future<Output = Result<String>> + Send;
    /// Sends part `number` (1-based) of an upload; returns what the commit needs to name it.
    fn put_part(
        &self,
        name: &str,
        upload: &str,
        number: u32,
        body: Body,
    ) -> impl Future<Output = Result<PartTag>> + Send;
    /// Makes the object visible from its parts (sorted by number), with `identity` in its user
    /// metadata where it is given at the end.
    fn complete(
        &self,
        name: &str,
        upload: &str,
        parts: Vec<PartTag>,
        identity: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Drops an upload's parts.
    fn abort(&self, name: &str, upload: &str) -> impl Future<Output = Result<()>> + Send;
    /// The uploads open for exactly this object: a start whose reply was lost still left one.
    fn uploads(&self, name: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn delete(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// The object's size and identity; a missing object is [`Error::NotFound`].
    fn head(&self, name: &str) -> impl Future<Output = Result<ObjectInfo>> + Send;
    /// How many objects carrying an identity have keys starting with the target's prefix joined to
    /// `prefix`, and their total size (every page of the listing; `stop` asked between pages).
    fn list(&self, prefix: &str, stop: &(dyn Fn() -> bool + Sync)) -> impl Future<Output = Result<Listing>> + Send;
    /// Up to `buf.len()` bytes from `offset` (a ranged GET) into `buf`, without holding the body
    /// elsewhere first; returns how many arrived.
    fn read(&self, name: &str, offset: u64, buf: &mut [u8]) -> impl Future<Output = Result<usize>> + Send;
}

/// Requests in flight to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concurrency {
    Fixed(usize),
    /// Adapted to the measured throughput, between 1 and the number of pool buffers.
    Auto,
}

impl std::str::FromStr for Concurrency {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Concurrency::Auto),
            n => match n.parse::<usize>() {
                Ok(n) if (1..=4096).contains(&n) => Ok(Concurrency::Fixed(n)),
                _ => Err(format!("'{s}' is not 'auto' or a number of requests from 1 to 4096")),
            },
        }
    }
}

/// How objects are cut and sent.
#[derive(Clone, Debug)]
pub struct CloudOptions {
    /// Part size; chosen from each object's size when absent.
    pub part_size: Option<u64>,
    /// Objects up to this size go in one request; default: the part size (at least 5 MiB).
    pub multipart_threshold: Option<u64>,
    pub concurrency: Concurrency,
    /// Send a checksum with every request, for the store to check (S3: CRC32C, Azure: CRC64).
    pub checksum: bool,
    /// Replace an existing object of the name even if the engine did not write it: for an output
    /// the user names (Python's `write_file`), never for a plugin's objects.
    pub replace_any: bool,
}

impl Default for CloudOptions {
    fn default() -> Self {
        CloudOptions {
            part_size: None,
            multipart_threshold: None,
            concurrency: Concurrency::Auto,
            checksum: true,
            replace_any: false,
        }
    }
}

/// The keys every object store takes (besides its part size, which S3 calls `part_size` and Azure
/// `block_size`).
pub const KEYS: &[&str] = &["concurrency", "checksum", "multipart_threshold"];

impl CloudOptions {
    /// A workload's settings for a store with these limits; `part_key` is the store's name for its
    /// part size.
    pub fn from_keys(keys: &mut Keys, limits: &PartLimits, part_key: &str) -> Result<CloudOptions> {
        let d = CloudOptions::default();
        Ok(CloudOptions {
            part_size: keys.size(part_key, limits.min_part..=limits.max_part)?,
            multipart_threshold: keys.size("multipart_threshold", 0..=limits.max_single)?,
            concurrency: keys.parsed("concurrency")?.unwrap_or(d.concurrency),
            checksum: keys.flag("checksum")?.unwrap_or(d.checksum),
            replace_any: false,
        })
    }
}

/// A key holding an `http://` or `https://` URL.
pub(crate) fn http_url(keys: &mut Keys, key: &str) -> Result<Option<String>> {
    match keys.string(key)? {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            Err(keys.invalid(key, format!("'{u}' is not an http(s):// URL")))
        }
        u => Ok(u),
    }
}

/// Parts up to this size are one pool buffer each (an explicit part size becomes the buffer size).
const MAX_BUFFER_PART: u64 = 64 << 20;

/// A sink writing to an object store.
pub struct CloudSink<S: Store> {
    store: Arc<S>,
    rt: Runtime,
    opts: CloudOptions,
    limiter: Arc<Limiter>,
    /// The pool's buffer size (the executor's write size), from `use_pool`.
    chunk: AtomicU64,
    warnings: Mutex<Vec<Note>>,
    patience: Patience,
}

/// The runtime that carries object-store requests (a few threads: they mostly wait on the network).
pub fn runtime() -> Result<Runtime> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("dgen-net")
        .enable_all()
        .build()
        .map_err(|e| Error::resource_from("cannot start the network runtime", e))
}

impl<S: Store> CloudSink<S> {
    /// Wraps a store, checking first that it can be written to.
    pub fn new(store: S, rt: Runtime, opts: CloudOptions) -> Result<CloudSink<S>> {
        rt.block_on(store.check())?;
        let limiter = Arc::new(Limiter::new(opts.concurrency));
        Ok(CloudSink {
            store: Arc::new(store),
            rt,
            opts,
            limiter,
            chunk: AtomicU64::new(0),
            warnings: Mutex::default(),
            patience: Patience::default(),
        })
    }

    /// An object's address, for messages.
    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.store.describe())
    }

    fn layout(&self, name: &str, size: u64) -> Result<Layout> {
        let chunk = match self.chunk.load(Ordering::Relaxed) {
            0 => self.opts.part_size.unwrap_or(8 << 20),
            c => c,
        };
        plan_layout(&self.store.limits(), self.store.engine(), &self.opts, chunk, size)
            .map_err(|why| Error::sink(self.url(name), why))
    }
}

impl<S: Store> Sink for CloudSink<S> {
    fn capabilities(&self) -> Capabilities {
        let l = self.store.limits();
        Capabilities {
            engine: self.store.engine(),
            alignment: 1,
            // Parts are assembled from as many buffers as they need: any buffer size works.
            min_write: 0,
            preferred_write: self.opts.part_size.filter(|&p| p <= MAX_BUFFER_PART),
            max_object: l.max_object,
            // Keys have no directories: only their whole length is limited.
            max_component: super::MAX_NAME,
        }
    }

    fn describe(&self) -> String {
        self.store.describe()
    }

    fn create(&self, name: &str, size: Option<u64>, identity: &Identity) -> Result<Box<dyn ObjectWriter + '_>> {
        super::check_name(name, &self.capabilities())?;
        let Some(size) = size else {
            return Err(Error::sink(self.describe(), format!("{name}: an object's size must be known before writing")));
        };
        let layout = self.layout(name, size)?;
        Ok(Box::new(CloudWriter {
            sink: self,
            name: name.to_string(),
            identity: identity.stored(),
            size,
            layout,
            shared: Arc::new(Shared::default()),
            pending: BTreeMap::new(),
            tasks: Vec::new(),
            closed: false,
            _open: crate::sink::interrupt::OpenUpload::new(),
        }))
    }

    fn open(&self, name: &str) -> Result<Box<dyn ObjectReader>> {
        super::check_name(name, &self.capabilities())?;
        let info = self.rt.block_on(self.store.head(name))?;
        Ok(Box::new(CloudReader {
            store: self.store.clone(),
            rt: self.rt.handle().clone(),
            name: name.into(),
            size: info.size,
            identity: info.identity,
        }))
    }

    fn stat(&self, name: &str) -> Result<Option<ObjectInfo>> {
        super::check_name(name, &self.capabilities())?;
        match self.rt.block_on(self.store.head(name)) {
            Ok(info) => Ok(Some(info)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn delete(&self, name: &str) -> Result<()> {
        super::check_name(name, &self.capabilities())?;
        // Only what the engine wrote: anything else is as good as missing.
        let info = self.rt.block_on(self.store.head(name))?;
        if info.identity.is_none() {
            return Err(Error::storage(Failure::NotFound, self.url(name), "no such object", None));
        }
        self.rt.block_on(self.store.delete(name))
    }

    fn list(&self, prefix: &str, stop: &(dyn Fn() -> bool + Sync)) -> Result<Listing> {
        if prefix.len() > super::MAX_NAME || prefix.chars().any(char::is_control) {
            return Err(Error::InvalidValue {
                key: "list prefix",
                value: crate::untrusted::sanitize(prefix, 200),
                reason: "is longer than a name or has a control character".into(),
            });
        }
        self.rt.block_on(self.store.list(prefix, stop))
    }

    fn keeps_identity(&self) -> bool {
        true
    }

    fn use_pool(&self, pool: &BufferPool) {
        self.chunk.store(pool.buffer_size() as u64, Ordering::Relaxed);
        self.limiter.set_max(pool.count());
    }

    fn notes(&self) -> Vec<Note> {
        let mut v = self.warnings.lock().unwrap().clone();
        if let Some(s) = self.limiter.summary() {
            v.push(Note::remark(s));
        }
        v
    }
}

struct CloudReader<S: Store> {
    store: Arc<S>,
    rt: tokio::runtime::Handle,
    name: String,
    size: u64,
    identity: Option<Identity>,
}

impl<S: Store> ObjectReader for CloudReader<S> {
    fn size(&self) -> u64 {
        self.size
    }

    fn identity(&self) -> Option<Identity> {
        self.identity
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let len = (buf.len() as u64).min(self.size - offset) as usize;
        self.rt.block_on(self.store.read(&self.name, offset, &mut buf[..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_parses() {
        assert_eq!("auto".parse::<Concurrency>(), Ok(Concurrency::Auto));
        assert_eq!("16".parse::<Concurrency>(), Ok(Concurrency::Fixed(16)));
        assert!("0".parse::<Concurrency>().is_err());
        assert!("lots".parse::<Concurrency>().is_err());
    }
}
