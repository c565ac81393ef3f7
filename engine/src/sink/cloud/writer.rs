//! One object being uploaded: parts assembled from pool buffers, sent as the limiter allows, then
//! committed at `finish` or aborted (with a patience window shared by the sink) on any failure.

use super::body::Lent;
use super::layout::Layout;
use super::{Body, CloudSink, PartTag, Store};
use crate::error::{Error, Result};
use crate::events::Note;
use crate::pool::Buffer;
use crate::sink::{Done, ObjectWriter, WriteReq};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

/// What a writer's part tasks share with it.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) upload: OnceCell<String>,
    /// A start was sent: even if it failed, the store may have opened an upload.
    pub(super) start_sent: AtomicBool,
    pub(super) tags: Mutex<Vec<PartTag>>,
    /// Set by abort: parts not yet sent are not sent.
    pub(super) stop: AtomicBool,
    /// A single-request object is stored.
    pub(super) stored: AtomicBool,
}

/// Whether object `name` may be written: nothing is there, or an object the engine wrote (it
/// carries an identity). One put there by anyone else is not replaced.
async fn may_replace<S: Store>(store: &S, name: &str) -> Result<()> {
    match store.head(name).await {
        Ok(info) if info.identity.is_none() => Err(Error::storage(
            crate::error::Failure::Denied,
            format!("{}/{name}", store.describe()),
            "an object is already there, which dgen-engine did not write: it is not replaced (it carries no \
             identity: another program put it, or a dgen-engine older than this one; remove it or choose another \
             prefix)",
            None,
        )),
        Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes gathered for one part until it is whole.
pub(super) struct Assembly {
    pub(super) len: u64,
    pub(super) got: u64,
    pub(super) chunks: BTreeMap<u64, (Buffer, usize, Done)>,
}

/// The completions of a part's writes: reported once the part is sent (or cannot be), and — should
/// the task be dropped before that — as cancelled, so the executor never waits for them forever.
pub(super) struct Completions(Vec<Done>);

impl Completions {
    pub(super) fn report(mut self, result: &Result<()>) {
        for d in self.0.drain(..) {
            d(match result {
                Ok(()) => Ok(()),
                Err(e) => Err(e.clone()),
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

pub(super) struct CloudWriter<'a, S: Store> {
    pub(super) sink: &'a CloudSink<S>,
    pub(super) name: String,
    /// The identity stamped on the object (as stored: `dgen1:…`).
    pub(super) identity: String,
    pub(super) size: u64,
    pub(super) layout: Layout,
    pub(super) shared: Arc<Shared>,
    pub(super) pending: BTreeMap<u64, Assembly>,
    pub(super) tasks: Vec<JoinHandle<()>>,
    pub(super) closed: bool,
    /// Counted among the uploads an interrupt must wait for.
    pub(super) _open: crate::sink::interrupt::OpenUpload,
}

impl<S: Store> CloudWriter<'_, S> {
    pub(super) fn url(&self) -> String {
        self.sink.url(&self.name)
    }

    pub(super) fn part_len(&self) -> u64 {
        match self.layout {
            Layout::Single => self.size,
            Layout::Multi { part } => part,
        }
    }

    /// Sends a whole part.
    pub(super) fn launch(&mut self, index: u64, a: Assembly) {
        let mut chunks = Vec::with_capacity(a.chunks.len());
        let mut dones = Vec::with_capacity(a.chunks.len());
        for (_, (buf, len, done)) in a.chunks {
            chunks.push(Bytes::from_owner(Lent { buf, len }));
            dones.push(done);
        }
        let body = Body::new(chunks);
        let completions = Completions(dones);
        let (store, shared, limiter) = (self.sink.store.clone(), self.shared.clone(), self.sink.limiter.clone());
        let (name, layout, identity) = (self.name.clone(), self.layout, self.identity.clone());
        let guard = !self.sink.opts.replace_any;
        let task = async move {
            let result = async {
                let _permit = limiter.acquire().await;
                if shared.stop.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                let bytes = body.len();
                match layout {
                    Layout::Single => {
                        if guard {
                            may_replace(store.as_ref(), &name).await?;
                        }
                        store.put(&name, body, &identity).await?;
                        shared.stored.store(true, Ordering::Relaxed);
                    }
                    Layout::Multi { .. } => {
                        let upload = shared
                            .upload
                            .get_or_try_init(|| async {
                                if guard {
                                    may_replace(store.as_ref(), &name).await?;
                                }
                                shared.start_sent.store(true, Ordering::Relaxed);
                                store.start(&name, &identity).await
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
    pub(super) fn join_tasks(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        self.sink.rt.block_on(async {
            for t in tasks {
                let _ = t.await;
            }
        });
    }

    /// Aborts this object's upload — and, when a start may have opened one whose reply never came
    /// back (the connection dropped), whatever uploads the store lists for the object.
    pub(super) fn abort_uploads(&self) {
        let store = &*self.sink.store;
        let mut ids: Vec<String> = self.shared.upload.get().cloned().into_iter().collect();
        if ids.is_empty() && self.shared.start_sent.load(Ordering::Relaxed) {
            match self.sink.rt.block_on(self.sink.patience.run(|| store.uploads(&self.name))) {
                Ok(found) => ids = found,
                Err(e) => self.sink.warnings.lock().unwrap().push(Note::warning(format!(
                    "could not list the uploads of {} to abort them; any that were opened remain: {e}",
                    self.url()
                ))),
            }
        }
        for upload in ids {
            if let Err(e) = self.sink.rt.block_on(self.sink.patience.run(|| store.abort(&self.name, &upload))) {
                self.sink.warnings.lock().unwrap().push(Note::warning(format!("{e} — {}", store.leftovers(&upload))));
            }
        }
    }

    pub(super) fn abort_now(&mut self) {
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
                    done(Err(e.clone()));
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
                let guard = !self.sink.opts.replace_any;
                self.sink.rt.block_on(async {
                    if guard {
                        may_replace(store.as_ref(), &self.name).await?;
                    }
                    store.put(&self.name, Body::default(), &self.identity).await
                })
            }
            Layout::Single if self.shared.stored.load(Ordering::Relaxed) => Ok(()),
            Layout::Single => Err(Error::sink(self.url(), "finished before it was written")),
            Layout::Multi { part } => {
                let mut tags = std::mem::take(&mut *self.shared.tags.lock().unwrap());
                tags.sort_by_key(|t| t.number);
                let want = size.div_ceil(part) as usize;
                let result = match self.shared.upload.get() {
                    Some(upload) if tags.len() == want => {
                        self.sink.rt.block_on(store.complete(&self.name, upload, tags, &self.identity))
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
pub(super) const ABORT_PATIENCE: Duration = Duration::from_secs(30);

/// When clean-up gives up, once a clean-up request has failed (cleared when one succeeds).
#[derive(Default)]
pub(super) struct Patience(Mutex<Option<Instant>>);

impl Patience {
    /// Runs a clean-up request (list or abort uploads), retrying with backoff until the window closes.
    pub(super) async fn run<T, F: Future<Output = Result<T>>>(&self, request: impl Fn() -> F) -> Result<T> {
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
