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

use super::{Capabilities, Done, ObjectReader, ObjectWriter, Sink, WriteReq};
use crate::error::{Error, Result};
use crate::pool::{Buffer, BufferPool};
use crate::size::format_size;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::{Notify, OnceCell};
use tokio::task::JoinHandle;

/// A store's upload rules.
#[derive(Clone, Copy, Debug)]
pub struct PartLimits {
    /// Every part but the last is at least this long.
    pub min_part: u64,
    pub max_part: u64,
    pub max_parts: u64,
    /// The largest object the store accepts.
    pub max_object: u64,
    /// The largest object sent in one request instead of parts.
    pub max_single: u64,
}

/// The body of one request: a part's pool buffers, in order, lent to the HTTP client. Cloning is
/// cheap (the SDK keeps a clone to retry); the buffers go back to the pool when the last clone drops.
#[derive(Clone, Default)]
pub struct Body {
    chunks: Vec<Bytes>,
    len: u64,
}

impl Body {
    pub fn new(chunks: Vec<Bytes>) -> Body {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Body { chunks, len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The single buffer of a one-buffer body.
    pub fn single(&self) -> Option<Bytes> {
        match self.chunks.len() {
            0 => Some(Bytes::new()),
            1 => Some(self.chunks[0].clone()),
            _ => None,
        }
    }

    /// As an `http-body` 1.x body that yields the buffers one frame each.
    pub fn into_http_body(self) -> ChunksBody {
        ChunksBody { chunks: self.chunks.into(), left: self.len }
    }

    pub fn crc32c(&self) -> u32 {
        self.digest(crc_fast::CrcAlgorithm::Crc32Iscsi) as u32
    }

    /// Azure Storage's CRC64 — the same function as CRC-64/NVME (reflected polynomial
    /// 0x9A6C9329AC4BC9B5, all-ones start and final xor).
    pub fn crc64(&self) -> u64 {
        self.digest(crc_fast::CrcAlgorithm::Crc64Nvme)
    }

    fn digest(&self, algorithm: crc_fast::CrcAlgorithm) -> u64 {
        let mut d = crc_fast::Digest::new(algorithm);
        for c in &self.chunks {
            d.update(c);
        }
        d.finalize()
    }

    /// The buffers, in order.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }
}

/// See [`Body::into_http_body`].
pub struct ChunksBody {
    chunks: std::collections::VecDeque<Bytes>,
    left: u64,
}

impl http_body::Body for ChunksBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| {
            self.left -= c.len() as u64;
            Ok(http_body::Frame::data(c))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// A pool buffer's first `len` bytes, as the owner of a `Bytes`.
struct Lent {
    buf: Buffer,
    len: usize,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf.as_slice()[..self.len]
    }
}

/// `scheme://root/prefix`: a bucket or container and the prefix below it, and how object names
/// become keys and addresses there.
pub struct Location {
    scheme: &'static str,
    /// The bucket or container.
    pub root: String,
    prefix: String,
}

impl Location {
    pub fn new(scheme: &'static str, root: String, prefix: String) -> Location {
        Location { scheme, root, prefix }
    }

    /// The store's key for an object name.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// An object's address, for messages.
    pub fn url(&self, name: &str) -> String {
        format!("{}://{}/{}", self.scheme, self.root, self.key(name))
    }

    /// The target's address.
    pub fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("{}://{}", self.scheme, self.root)
        } else {
            format!("{}://{}/{}", self.scheme, self.root, self.prefix)
        }
    }
}

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
    /// Writes a whole object in one request (with the store's checksum, when they are on).
    fn put(&self, name: &str, body: Body) -> impl Future<Output = Result<()>> + Send;
    /// Starts a multipart upload; returns its id.
    fn start(&self, name: &str) -> impl Future<Output = Result<String>> + Send;
    /// Sends part `number` (1-based) of an upload; returns what the commit needs to name it.
    fn put_part(
        &self,
        name: &str,
        upload: &str,
        number: u32,
        body: Body,
    ) -> impl Future<Output = Result<PartTag>> + Send;
    /// Makes the object visible from its parts (sorted by number).
    fn complete(&self, name: &str, upload: &str, parts: Vec<PartTag>) -> impl Future<Output = Result<()>> + Send;
    /// Drops an upload's parts.
    fn abort(&self, name: &str, upload: &str) -> impl Future<Output = Result<()>> + Send;
    /// The uploads open for exactly this object: a start whose reply was lost still left one.
    fn uploads(&self, name: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn delete(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    fn size(&self, name: &str) -> impl Future<Output = Result<u64>> + Send;
    /// `len` bytes from `offset` (a ranged GET).
    fn read(&self, name: &str, offset: u64, len: u64) -> impl Future<Output = Result<Bytes>> + Send;
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
}

impl Default for CloudOptions {
    fn default() -> Self {
        CloudOptions { part_size: None, multipart_threshold: None, concurrency: Concurrency::Auto, checksum: true }
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
    warnings: Mutex<Vec<String>>,
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
        .map_err(|e| Error::Resource(format!("cannot start the network runtime: {e}")))
}

impl<S: Store> CloudSink<S> {
    /// Wraps a store, checking first that it can be written to.
    pub fn new(store: S, rt: Runtime, opts: CloudOptions) -> Result<CloudSink<S>> {
        if let Some(p) = opts.part_size {
            let l = store.limits();
            if p < l.min_part || p > l.max_part {
                return Err(Error::InvalidValue {
                    key: "target.part_size",
                    value: format_size(p),
                    reason: format!(
                        "must be from {} to {} for {}",
                        format_size(l.min_part),
                        format_size(l.max_part),
                        store.engine()
                    ),
                });
            }
        }
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

/// How an object of `size` bytes is sent, given the store's limits, the options and the pool's
/// buffer size (`chunk`).
fn plan_layout(
    l: &PartLimits,
    engine: &str,
    opts: &CloudOptions,
    chunk: u64,
    size: u64,
) -> std::result::Result<Layout, String> {
    if size > l.max_object {
        return Err(format!("{} is more than {engine} allows ({})", format_size(size), format_size(l.max_object)));
    }
    // Small objects go in one request (from one or a few buffers).
    let single = opts
        .multipart_threshold
        .unwrap_or_else(|| chunk.max(l.min_part).max(opts.part_size.unwrap_or(0)))
        .min(l.max_single);
    if size <= single {
        return Ok(Layout::Single);
    }
    // Whole buffers per part: enough for the store's minimum, the requested size and its part count.
    let mut k = l.min_part.div_ceil(chunk).max(size.div_ceil(chunk * l.max_parts)).max(1);
    if let Some(p) = opts.part_size {
        k = k.max(p.div_ceil(chunk));
    }
    let part = k * chunk;
    if part > l.max_part {
        return Err(format!(
            "{} in at most {} parts needs parts of {}, more than the {} allowed",
            format_size(size),
            l.max_parts,
            format_size(part),
            format_size(l.max_part)
        ));
    }
    Ok(Layout::Multi { part })
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

    fn create(&self, name: &str, size: Option<u64>) -> Result<Box<dyn ObjectWriter + '_>> {
        super::check_name(name, &self.capabilities())?;
        let Some(size) = size else {
            return Err(Error::sink(self.describe(), format!("{name}: an object's size must be known before writing")));
        };
        let layout = self.layout(name, size)?;
        Ok(Box::new(CloudWriter {
            sink: self,
            name: name.to_string(),
            size,
            layout,
            shared: Arc::new(Shared::default()),
            pending: BTreeMap::new(),
            tasks: Vec::new(),
            closed: false,
        }))
    }

    fn open(&self, name: &str) -> Result<Box<dyn ObjectReader>> {
        super::check_name(name, &self.capabilities())?;
        let size = self.rt.block_on(self.store.size(name))?;
        Ok(Box::new(CloudReader { store: self.store.clone(), rt: self.rt.handle().clone(), name: name.into(), size }))
    }

    fn use_pool(&self, pool: &BufferPool) {
        self.chunk.store(pool.buffer_size() as u64, Ordering::Relaxed);
        self.limiter.set_max(pool.count());
    }

    fn notes(&self) -> Vec<String> {
        let mut v = self.warnings.lock().unwrap().clone();
        if let Some(s) = self.limiter.summary() {
            v.push(s);
        }
        v
    }
}

#[derive(Clone, Copy, Debug)]
enum Layout {
    /// One request for the whole object.
    Single,
    /// Parts of `part` bytes (the last may be shorter).
    Multi { part: u64 },
}

/// What a writer's part tasks share with it.
#[derive(Default)]
struct Shared {
    upload: OnceCell<String>,
    /// A start was sent: even if it failed, the store may have opened an upload.
    start_sent: AtomicBool,
    tags: Mutex<Vec<PartTag>>,
    /// Set by abort: parts not yet sent are not sent.
    stop: AtomicBool,
    /// A single-request object is stored.
    stored: AtomicBool,
}

/// Writes gathered for one part until it is whole.
struct Assembly {
    len: u64,
    got: u64,
    chunks: BTreeMap<u64, (Buffer, usize, Done)>,
}

/// The completions of a part's writes: reported once the part is sent (or cannot be), and — should
/// the task be dropped before that — as cancelled, so the executor never waits for them forever.
struct Completions(Vec<Done>);

impl Completions {
    fn report(mut self, result: &Result<()>) {
        for d in self.0.drain(..) {
            d(match result {
                Ok(()) => Ok(()),
                Err(e) => Err(clone_error(e)),
            });
        }
    }
}

impl Drop for Completions {
    fn drop(&mut self) {
        for d in self.0.drain(..) {
            d(Err(Error::Cancelled));
        }
    }
}

/// Errors are not `Clone` (I/O errors are not); every write of a failed part gets the same message.
fn clone_error(e: &Error) -> Error {
    match e {
        Error::Sink { target, message } => Error::sink(target.clone(), message.clone()),
        Error::Cancelled => Error::Cancelled,
        other => Error::Resource(other.to_string()),
    }
}

struct CloudWriter<'a, S: Store> {
    sink: &'a CloudSink<S>,
    name: String,
    size: u64,
    layout: Layout,
    shared: Arc<Shared>,
    pending: BTreeMap<u64, Assembly>,
    tasks: Vec<JoinHandle<()>>,
    closed: bool,
}

impl<S: Store> CloudWriter<'_, S> {
    fn url(&self) -> String {
        self.sink.url(&self.name)
    }

    fn part_len(&self) -> u64 {
        match self.layout {
            Layout::Single => self.size,
            Layout::Multi { part } => part,
        }
    }

    /// Sends a whole part.
    fn launch(&mut self, index: u64, a: Assembly) {
        let mut chunks = Vec::with_capacity(a.chunks.len());
        let mut dones = Vec::with_capacity(a.chunks.len());
        for (_, (buf, len, done)) in a.chunks {
            chunks.push(Bytes::from_owner(Lent { buf, len }));
            dones.push(done);
        }
        let body = Body::new(chunks);
        let completions = Completions(dones);
        let (store, shared, limiter) = (self.sink.store.clone(), self.shared.clone(), self.sink.limiter.clone());
        let (name, layout) = (self.name.clone(), self.layout);
        let task = async move {
            let result = async {
                let _permit = limiter.acquire().await;
                if shared.stop.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                let bytes = body.len();
                match layout {
                    Layout::Single => {
                        store.put(&name, body).await?;
                        shared.stored.store(true, Ordering::Relaxed);
                    }
                    Layout::Multi { .. } => {
                        let upload = shared
                            .upload
                            .get_or_try_init(|| {
                                shared.start_sent.store(true, Ordering::Relaxed);
                                store.start(&name)
                            })
                            .await?;
                        let number = index as u32 + 1;
                        let tag = store.put_part(&name, upload, number, body).await?;
                        shared.tags.lock().unwrap().push(tag);
                    }
                }
                limiter.record(bytes);
                Ok(())
            }
            .await;
            // The body (and so the buffers) went with the request; now the writes are done.
            completions.report(&result);
        };
        self.tasks.push(self.sink.rt.spawn(task));
    }

    /// Waits for the part tasks (each ends: sent, failed, or skipped after a stop).
    fn join_tasks(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        self.sink.rt.block_on(async {
            for t in tasks {
                let _ = t.await;
            }
        });
    }

    /// Aborts this object's upload — and, when a start may have opened one whose reply never came
    /// back (the connection dropped), whatever uploads the store lists for the object.
    fn abort_uploads(&self) {
        let store = &*self.sink.store;
        let mut ids: Vec<String> = self.shared.upload.get().cloned().into_iter().collect();
        if ids.is_empty() && self.shared.start_sent.load(Ordering::Relaxed) {
            match self.sink.rt.block_on(self.sink.patience.run(|| store.uploads(&self.name))) {
                Ok(found) => ids = found,
                Err(e) => self.sink.warnings.lock().unwrap().push(format!(
                    "warning: could not list the uploads of {} to abort them; any that were opened remain: {e}",
                    self.url()
                )),
            }
        }
        for upload in ids {
            if let Err(e) = self.sink.rt.block_on(self.sink.patience.run(|| store.abort(&self.name, &upload))) {
                self.sink.warnings.lock().unwrap().push(format!("warning: {e} — {}", store.leftovers(&upload)));
            }
        }
    }

    fn abort_now(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.shared.stop.store(true, Ordering::Relaxed);
        // Writes held for parts that will never be whole: their buffers go back, their writes fail.
        for (_, a) in std::mem::take(&mut self.pending) {
            for (_, (buf, _, done)) in a.chunks {
                drop(buf);
                done(Err(Error::Cancelled));
            }
        }
        // Requests already sent end first; then the upload (with every part that made it) is dropped.
        self.join_tasks();
        self.abort_uploads();
        if self.shared.stored.load(Ordering::Relaxed) {
            let _ = self.sink.rt.block_on(self.sink.store.delete(&self.name));
        }
    }
}

impl<S: Store> ObjectWriter for CloudWriter<'_, S> {
    fn submit(&mut self, req: WriteReq) {
        let WriteReq { offset, len, buf, done } = req;
        let part = self.part_len().max(1);
        let end = offset + len as u64;
        if self.closed || len == 0 || end > self.size || offset / part != (end - 1) / part {
            drop(buf);
            let why = if self.closed { "after the object was closed" } else { "outside the object's parts" };
            return done(Err(Error::sink(self.url(), format!("write of {len} bytes at {offset} {why}"))));
        }
        let index = offset / part;
        let part_len = part.min(self.size - index * part);
        let a =
            self.pending.entry(index).or_insert_with(|| Assembly { len: part_len, got: 0, chunks: BTreeMap::new() });
        a.got += len as u64;
        a.chunks.insert(offset - index * part, (buf, len, done));
        if a.got >= a.len {
            let a = self.pending.remove(&index).expect("assembly exists");
            // The executor writes each byte once; anything else is a bug worth failing loudly on.
            let mut at = 0;
            let tiles = a.chunks.iter().all(|(&o, &(_, l, _))| {
                let ok = o == at;
                at += l as u64;
                ok
            }) && at == a.len;
            if !tiles {
                let e = Error::sink(self.url(), format!("writes to part {} overlap", index + 1));
                for (_, (buf, _, done)) in a.chunks {
                    drop(buf);
                    done(Err(clone_error(&e)));
                }
                return;
            }
            self.launch(index, a);
        }
    }

    fn finish(mut self: Box<Self>, size: u64) -> Result<()> {
        self.closed = true;
        self.join_tasks();
        let store = self.sink.store.clone();
        match self.layout {
            Layout::Single if size == 0 && !self.shared.stored.load(Ordering::Relaxed) => {
                self.sink.rt.block_on(store.put(&self.name, Body::default()))
            }
            Layout::Single if self.shared.stored.load(Ordering::Relaxed) => Ok(()),
            Layout::Single => Err(Error::sink(self.url(), "finished before it was written")),
            Layout::Multi { part } => {
                let mut tags = std::mem::take(&mut *self.shared.tags.lock().unwrap());
                tags.sort_by_key(|t| t.number);
                let want = size.div_ceil(part) as usize;
                let result = match self.shared.upload.get() {
                    Some(upload) if tags.len() == want => {
                        self.sink.rt.block_on(store.complete(&self.name, upload, tags))
                    }
                    Some(_) => Err(Error::sink(self.url(), format!("{} of {want} parts were uploaded", tags.len()))),
                    None => Err(Error::sink(self.url(), "finished before it was written")),
                };
                if result.is_err() {
                    self.abort_uploads();
                }
                result
            }
        }
    }

    fn abort(mut self: Box<Self>) {
        self.abort_now();
    }

    fn part_size(&self) -> Option<u64> {
        Some(self.part_len())
    }
}

/// How long clean-up keeps trying: a store that went away for a moment (the usual cause of the
/// failure being cleaned up) should not be left holding parts. The window is shared by every object
/// of the sink — a store that is gone for good costs one window, not one per open object.
const ABORT_PATIENCE: Duration = Duration::from_secs(30);

/// When clean-up gives up, once a clean-up request has failed (cleared when one succeeds).
#[derive(Default)]
struct Patience(Mutex<Option<Instant>>);

impl Patience {
    /// Runs a clean-up request (list or abort uploads), retrying with backoff until the window closes.
    async fn run<T, F: Future<Output = Result<T>>>(&self, request: impl Fn() -> F) -> Result<T> {
        let mut pause = Duration::from_millis(200);
        loop {
            match request().await {
                Ok(v) => {
                    *self.0.lock().unwrap() = None;
                    return Ok(v);
                }
                Err(e) => {
                    let give_up = *self.0.lock().unwrap().get_or_insert_with(|| Instant::now() + ABORT_PATIENCE);
                    if Instant::now() + pause > give_up {
                        return Err(e);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(4));
                }
            }
        }
    }
}

impl<S: Store> Drop for CloudWriter<'_, S> {
    fn drop(&mut self) {
        self.abort_now();
    }
}

struct CloudReader<S: Store> {
    store: Arc<S>,
    rt: tokio::runtime::Handle,
    name: String,
    size: u64,
}

impl<S: Store> ObjectReader for CloudReader<S> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let len = (buf.len() as u64).min(self.size - offset);
        let data = self.rt.block_on(self.store.read(&self.name, offset, len))?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }
}

/// Bounds the requests in flight over all objects of a sink. In `auto` mode it climbs the throughput
/// curve the way the AWS transfer managers do: every window it compares the measured rate with the
/// last one and keeps going in the direction that helped, reverses when it hurt, and holds on a plateau.
struct Limiter {
    auto: bool,
    state: Mutex<LimitState>,
    notify: Notify,
}

struct LimitState {
    in_flight: usize,
    target: usize,
    max: usize,
    start: usize,
    window: Instant,
    window_bytes: u64,
    window_parts: usize,
    last_rate: f64,
    best_rate: f64,
    direction: i64,
}

/// The least time a measurement window covers.
const WINDOW: Duration = Duration::from_millis(300);

impl Limiter {
    fn new(c: Concurrency) -> Limiter {
        let (auto, target) = match c {
            Concurrency::Fixed(n) => (false, n),
            Concurrency::Auto => (true, 4),
        };
        Limiter {
            auto,
            state: Mutex::new(LimitState {
                in_flight: 0,
                target,
                max: if auto { 64 } else { target },
                start: target,
                window: Instant::now(),
                window_bytes: 0,
                window_parts: 0,
                last_rate: 0.0,
                best_rate: 0.0,
                direction: 1,
            }),
            notify: Notify::new(),
        }
    }

    /// In auto mode, requests in flight never exceed the buffers (parts cannot either).
    fn set_max(&self, buffers: usize) {
        if self.auto {
            let mut s = self.state.lock().unwrap();
            s.max = buffers.max(1);
            s.target = s.target.min(s.max);
            s.start = s.target;
        }
    }

    async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock().unwrap();
                if s.in_flight < s.target {
                    s.in_flight += 1;
                    return Permit(self.clone());
                }
            }
            notified.await;
        }
    }

    fn record(&self, bytes: u64) {
        if !self.auto {
            return;
        }
        let mut s = self.state.lock().unwrap();
        s.window_bytes += bytes;
        s.window_parts += 1;
        let elapsed = s.window.elapsed();
        if elapsed < WINDOW || s.window_parts < s.target {
            return;
        }
        let rate = s.window_bytes as f64 / elapsed.as_secs_f64();
        if s.last_rate > 0.0 {
            if rate < s.last_rate * 0.95 {
                s.direction = -s.direction;
            } else if rate < s.last_rate * 1.05 {
                // A plateau: hold, but probe upwards again now and then.
                s.direction = if s.direction == 0 { 1 } else { 0 };
            }
        }
        let step = (s.target / 4).max(1) as i64;
        let target = (s.target as i64 + s.direction * step).clamp(1, s.max as i64) as usize;
        let grew = target > s.target;
        s.target = target;
        s.last_rate = rate;
        s.best_rate = s.best_rate.max(rate);
        s.window = Instant::now();
        s.window_bytes = 0;
        s.window_parts = 0;
        drop(s);
        if grew {
            self.notify.notify_waiters();
        }
    }

    fn release(&self) {
        self.state.lock().unwrap().in_flight -= 1;
        self.notify.notify_one();
    }

    fn summary(&self) -> Option<String> {
        let s = self.state.lock().unwrap();
        (self.auto && s.best_rate > 0.0).then(|| {
            format!(
                "concurrency auto: {} → {} requests in flight (max {}), best window {}/s",
                s.start,
                s.target,
                s.max,
                format_size(s.best_rate as u64)
            )
        })
    }
}

struct Permit(Arc<Limiter>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
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

    fn part(l: &PartLimits, opts: &CloudOptions, chunk: u64, size: u64) -> Option<u64> {
        match plan_layout(l, "store", opts, chunk, size).unwrap() {
            Layout::Single => None,
            Layout::Multi { part } => Some(part),
        }
    }

    #[test]
    fn parts_stay_within_each_stores_limits() {
        const MIB: u64 = 1 << 20;
        let (az, s3, d) = (super::super::azure::LIMITS, super::super::s3::LIMITS, CloudOptions::default());
        // Azure: a block per buffer, until 50,000 of them would not hold the blob.
        assert_eq!(part(&az, &d, 8 * MIB, 8 * MIB), None);
        assert_eq!(part(&az, &d, 8 * MIB, 8 * MIB + 1), Some(8 * MIB));
        assert_eq!(part(&az, &d, 8 * MIB, 50_000 * 8 * MIB), Some(8 * MIB));
        assert_eq!(part(&az, &d, 8 * MIB, 50_000 * 8 * MIB + 1), Some(16 * MIB));
        assert_eq!(part(&az, &d, 8 * MIB, 1 << 40), Some(24 * MIB));
        // S3: at least 5 MiB a part, whatever the buffer.
        assert_eq!(part(&s3, &d, MIB, 5 * MIB + 1), Some(5 * MIB));
        assert_eq!(part(&s3, &d, 8 * MIB, 10_000 * 8 * MIB + 1), Some(16 * MIB));
        // An explicit part size and threshold.
        let o = CloudOptions { part_size: Some(96 * MIB), multipart_threshold: Some(MIB), ..CloudOptions::default() };
        assert_eq!(part(&az, &o, 8 * MIB, 2 * MIB), Some(96 * MIB));
        // Beyond what the store can hold: a message, not a panic.
        let e = plan_layout(&az, "azure", &d, 8 * MIB, az.max_object + 1).unwrap_err();
        assert!(e.contains("more than azure allows"), "{e}");
        let e = plan_layout(&s3, "s3", &d, 8 * MIB, s3.max_object).unwrap();
        assert!(matches!(e, Layout::Multi { part } if part <= s3.max_part));
    }

    #[test]
    fn auto_concurrency_climbs_while_it_pays_and_stays_bounded() {
        let l = Limiter::new(Concurrency::Auto);
        l.set_max(16);
        // A store whose throughput grows with requests in flight up to 10, then stays flat.
        for _ in 0..200 {
            let t = l.state.lock().unwrap().target;
            let rate = (t.min(10) as u64 * 100) << 20;
            l.state.lock().unwrap().window -= WINDOW;
            for _ in 0..t {
                l.record(rate / t as u64 * WINDOW.as_millis() as u64 / 1000);
            }
        }
        let t = l.state.lock().unwrap().target;
        assert!((7..=16).contains(&t), "settled at {t}");
    }
}
