//! The pipeline: generation workers fill pool buffers while the sink writes others.
//!
//! One coordinator thread (the caller's) owns all scheduling state; everything else talks to it through
//! one channel. A buffer's life: taken from the pool → filled by a rayon worker (with its CRC32C, when
//! asked) → submitted to the object's writer → back to the pool when the write completes. When no
//! buffer is free the coordinator waits for a completion: that wait is the backpressure, and its length
//! is reported, so a user can tell whether generation or storage is the bottleneck. Many objects are
//! open at once and share the one pool, served round-robin; how many writes the sink runs at once is
//! the sink's own queue depth, and buffers beyond it hold data generated ahead.
//!
//! On the first failed write, or on cancellation (Ctrl-C), nothing new is scheduled, in-flight work
//! drains, and every object still open is aborted — its writer removes what it wrote.
//!
//! When a stonewall goes up (another rank finished the phase first), the phase ends here too: no new
//! write starts, the writes in flight complete, objects already whole are finished, and the others
//! are aborted and reported as cut (with the bytes they had written); objects that arrive while the
//! wall is up are reported as cut at once, without a byte written.

use crate::error::{Error, Result};
use crate::generator::Generator;
use crate::object::Content;
use crate::pipeline::phase::TimeSplit;
use crate::pool::{Buffer, BufferPool};
use crate::sink::{Capabilities, ObjectWriter, Sink, WriteReq};
use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pipeline settings.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// Bytes per buffer (= per write); rounded up to the sink's alignment and minimum write.
    pub buffer_size: usize,
    /// Buffers in the pool: memory use is `buffers × buffer_size`.
    pub buffers: usize,
    /// Generation threads.
    pub threads: usize,
    /// Objects written at once (they share the pool round-robin).
    pub open_objects: usize,
    /// Compute each object's CRC32C.
    pub crc: bool,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            buffer_size: 8 << 20,
            buffers: 16,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            open_objects: 4,
            crc: false,
        }
    }
}

/// One object to write.
#[derive(Clone, Debug)]
pub struct ObjectJob {
    pub name: String,
    pub size: u64,
    pub content: Content,
}

/// A finished object.
#[derive(Clone, Debug)]
pub struct ObjectResult {
    pub name: String,
    pub size: u64,
    pub crc32c: Option<u32>,
    /// From create to durable.
    pub latency: Duration,
    /// When it became durable (the run's throughput is measured to the last of these).
    pub at: Instant,
    /// The stonewall ended its phase first: `size` is the bytes it had written, and it was removed.
    pub cut: bool,
}

/// What a run did, and where its time went.
#[derive(Clone, Debug)]
pub struct RunStats {
    pub bytes: u64,
    pub ops: u64,
    pub elapsed: Duration,
    /// Thread-time spent generating (and checksumming) data.
    pub generate: Duration,
    pub threads: usize,
    /// Wall time with at least one write in flight.
    pub io_busy: Duration,
    /// Wall time the pipeline had work but no free buffer.
    pub buffer_wait: Duration,
    /// Per-write latency, microseconds.
    pub op_latency: Histogram<u64>,
    /// Finished objects, when nobody listens for them on a `done` channel.
    pub objects: Vec<ObjectResult>,
    pub pool_bytes: u64,
}

/// Receives progress (bytes written so far) now and then.
pub trait Observer {
    fn progress(&mut self, _bytes: u64) {}
}

impl Observer for () {}

enum Event {
    Generated { obj: usize, chunk: u64, len: usize, buf: Buffer, crc: Option<u32>, took: Duration },
    Written { obj: usize, len: usize, result: Result<()>, took: Duration },
    Finished { result: Result<ObjectResult> },
}

struct Open<'s> {
    id: usize,
    job: ObjectJob,
    writer: Option<Box<dyn ObjectWriter + 's>>,
    /// Bytes per part when the writer assembles several writes into one (0: every write stands alone).
    part: u64,
    next: u64,
    in_flight: usize,
    written: u64,
    crc: CrcChain,
    started: Instant,
}

/// An object's CRC32C, built from its chunks' CRCs as they arrive in any order: the CRC of the
/// contiguous prefix so far, plus the chunks that arrived ahead of it (at most the chunks in flight).
/// Memory stays the same whatever the object's size.
#[derive(Default)]
struct CrcChain {
    prefix: u32,
    done: u64,
    ahead: std::collections::BTreeMap<u64, (u32, u64)>,
}

impl CrcChain {
    fn add(&mut self, offset: u64, crc: u32, len: u64) {
        self.ahead.insert(offset, (crc, len));
        while let Some((crc, len)) = self.ahead.remove(&self.done) {
            self.prefix = if self.done == 0 {
                crc
            } else {
                crc_fast::checksum_combine(crc_fast::CrcAlgorithm::Crc32Iscsi, self.prefix as u64, crc as u64, len)
                    as u32
            };
            self.done += len;
        }
    }
}

/// An object whose writes are done, on its way to `finish` (fsync, rename, commit) on the finisher.
struct ToFinish<'s> {
    writer: Box<dyn ObjectWriter + 's>,
    result: ObjectResult,
    started: Instant,
}

/// Runs object writes through a pool against one sink.
pub struct Executor<'s> {
    sink: &'s dyn Sink,
    gen: Arc<Generator>,
    pool: BufferPool,
    workers: rayon::ThreadPool,
    cfg: ExecConfig,
    chunk: usize,
    split: Arc<TimeSplit>,
    wall: Option<Arc<crate::world::Wall>>,
}

/// The coordinator's state during one run.
struct Run<'e, 's> {
    exec: &'e Executor<'s>,
    tx: Sender<Event>,
    /// Where finished (and cut) objects go when someone listens.
    done: Option<Sender<ObjectResult>>,
    open: Vec<Open<'s>>,
    next_id: usize,
    rr: usize,
    in_gen: usize,
    in_io: usize,
    finishing: usize,
    failure: Option<Error>,
    stats: RunStats,
}

/// The buffer size a sink needs for a requested one: at least its minimum write, a multiple of its
/// alignment (and of a page).
pub fn buffer_size_for(caps: &Capabilities, requested: usize) -> usize {
    let align = caps.alignment.max(4096);
    let size = caps.preferred_write.map_or(requested, |p| p as usize);
    size.max(caps.min_write as usize).max(1).div_ceil(align) * align
}

impl<'s> Executor<'s> {
    pub fn new(sink: &'s dyn Sink, gen: Generator, mut cfg: ExecConfig) -> Result<Executor<'s>> {
        let caps = sink.capabilities();
        let align = caps.alignment.max(4096);
        let size = buffer_size_for(&caps, cfg.buffer_size);
        cfg.buffers = cfg.buffers.max(1);
        cfg.threads = cfg.threads.max(1);
        cfg.open_objects = cfg.open_objects.max(1);
        let pool = BufferPool::new(cfg.buffers, size, align).map_err(|e| Error::Resource(e.to_string()))?;
        sink.use_pool(&pool);
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("dgen-gen-{i}"))
            .build()
            .map_err(|e| Error::Resource(format!("cannot start generator threads: {e}")))?;
        Ok(Executor { sink, gen: Arc::new(gen), pool, workers, cfg, chunk: size, split: Arc::default(), wall: None })
    }

    /// Stops each phase's writes when `wall` goes up (stonewalling across ranks).
    pub fn with_wall(mut self, wall: Arc<crate::world::Wall>) -> Executor<'s> {
        self.wall = Some(wall);
        self
    }

    fn walled(&self) -> bool {
        self.wall.as_ref().is_some_and(|w| w.up())
    }

    /// The counters its threads add to as they work (a phase takes its share of them).
    pub fn split(&self) -> Arc<TimeSplit> {
        self.split.clone()
    }

    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// Bytes per write after rounding to the sink's needs.
    pub fn chunk_size(&self) -> usize {
        self.chunk
    }

    /// Writes every job; on error or cancellation aborts the objects still open and returns the error.
    pub fn run(
        &self,
        jobs: impl IntoIterator<Item = ObjectJob>,
        observer: &mut dyn Observer,
        cancel: &AtomicBool,
    ) -> Result<RunStats> {
        let (tx, rx) = crossbeam_channel::unbounded();
        for j in jobs {
            let _ = tx.send(j);
        }
        drop(tx);
        self.run_channel(rx, None, observer, cancel)
    }

    /// Writes jobs as they arrive on `jobs` until it is closed, reporting each finished object on
    /// `done` (a plugin's `wait-all` listens there). Finishing an object (fsync, rename, commit) runs
    /// on a separate thread, so it never stalls the writes of the others.
    pub fn run_channel(
        &self,
        jobs: Receiver<ObjectJob>,
        done: Option<Sender<ObjectResult>>,
        observer: &mut dyn Observer,
        cancel: &AtomicBool,
    ) -> Result<RunStats> {
        let start = Instant::now();
        // Where the time went is what the split's counters gained over this run.
        let split_at_start = self.split.snapshot();
        let (tx, rx) = crossbeam_channel::unbounded::<Event>();
        let (fin_tx, fin_rx) = crossbeam_channel::unbounded::<ToFinish<'s>>();
        let mut run = Run {
            exec: self,
            tx: tx.clone(),
            done: done.clone(),
            open: Vec::new(),
            next_id: 0,
            rr: 0,
            in_gen: 0,
            in_io: 0,
            finishing: 0,
            failure: None,
            stats: RunStats {
                bytes: 0,
                ops: 0,
                elapsed: Duration::ZERO,
                generate: Duration::ZERO,
                threads: self.cfg.threads,
                io_busy: Duration::ZERO,
                buffer_wait: Duration::ZERO,
                op_latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
                objects: Vec::new(),
                pool_bytes: self.pool.bytes(),
            },
        };
        std::thread::scope(|s| {
            // One finisher per open object: a commit (fsync, or an object store assembling a big
            // upload) of one object must not queue behind another's.
            for _ in 0..self.cfg.open_objects.min(64) {
                let (fin_rx, tx) = (fin_rx.clone(), tx.clone());
                s.spawn(move || {
                    for f in fin_rx.iter() {
                        let ToFinish { writer, mut result, started } = f;
                        let r = writer.finish(result.size).map(|()| {
                            result.latency = started.elapsed();
                            result.at = Instant::now();
                            result
                        });
                        let _ = tx.send(Event::Finished { result: r });
                    }
                });
            }
            drop((fin_rx, tx));
            run.drive(&jobs, done.as_ref(), &rx, &fin_tx, observer, cancel);
            drop(fin_tx);
        });
        observer.progress(run.stats.bytes);
        if let Some(e) = run.failure {
            return Err(e);
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        run.stats.elapsed = start.elapsed();
        let split = self.split.snapshot().since(&split_at_start);
        run.stats.generate = split.generate;
        run.stats.io_busy = split.writes_in_flight;
        run.stats.buffer_wait = split.write_buffer_wait;
        Ok(run.stats)
    }
}

impl<'e, 's> Run<'e, 's> {
    fn stopping(&self, cancel: &AtomicBool) -> bool {
        self.failure.is_some() || cancel.load(Ordering::Relaxed)
    }

    fn fail(&mut self, e: Error) {
        self.failure.get_or_insert(e);
    }

    #[allow(clippy::too_many_arguments)]
    fn drive(
        &mut self,
        jobs: &Receiver<ObjectJob>,
        done: Option<&Sender<ObjectResult>>,
        rx: &Receiver<Event>,
        fin_tx: &Sender<ToFinish<'s>>,
        observer: &mut dyn Observer,
        cancel: &AtomicBool,
    ) {
        let mut jobs_left = true;
        let mut last_progress = Instant::now();
        loop {
            // Open objects up to the limit.
            while !self.stopping(cancel) && jobs_left && self.open.len() < self.exec.cfg.open_objects {
                match jobs.try_recv() {
                    Ok(job) => self.open_object(job, fin_tx),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => jobs_left = false,
                }
            }
            // Stopping: abort open objects now rather than after the drain — a writer holding the
            // first writes of a part that will never be completed gives them back when aborted.
            if self.stopping(cancel) {
                for o in &mut self.open {
                    if let Some(w) = o.writer.take() {
                        w.abort();
                    }
                }
            }
            let starved = if self.stopping(cancel) { false } else { self.schedule() };
            let idle = self.in_gen == 0 && self.in_io == 0 && self.finishing == 0;
            if idle && (self.stopping(cancel) || (self.open.is_empty() && !jobs_left)) {
                break;
            }
            // Wait for something to happen (an event, or a new job if there is room for one); the
            // timeout keeps Ctrl-C responsive.
            let waited = Instant::now();
            let want_jobs = jobs_left && !self.stopping(cancel) && self.open.len() < self.exec.cfg.open_objects;
            let event = if want_jobs {
                crossbeam_channel::select! {
                    recv(rx) -> e => e.ok(),
                    recv(jobs) -> j => {
                        match j {
                            Ok(job) => self.open_object(job, fin_tx),
                            Err(_) => jobs_left = false,
                        }
                        None
                    }
                    default(Duration::from_millis(100)) => None,
                }
            } else {
                rx.recv_timeout(Duration::from_millis(100)).ok()
            };
            // Out of buffers with some held by the sink: the storage is what we wait for. (With all of
            // them being generated, it is generation, which the generate time already shows.)
            if starved && self.in_io > 0 {
                self.exec.split.write_waited(waited.elapsed());
            }
            match event {
                Some(Event::Generated { obj, chunk, len, buf, crc, took }) => {
                    self.generated(obj, chunk, len, buf, crc, took, cancel)
                }
                Some(Event::Written { obj, len, result, took }) => self.written(obj, len, result, took, fin_tx),
                Some(Event::Finished { result }) => {
                    self.finishing -= 1;
                    match result {
                        // With a listener (a plugin's host), the listener keeps the record: one copy.
                        Ok(r) => match done {
                            Some(d) => {
                                let _ = d.send(r);
                            }
                            None => self.stats.objects.push(r),
                        },
                        Err(e) => self.fail(e),
                    }
                }
                None => {}
            }
            if last_progress.elapsed() >= Duration::from_millis(100) {
                observer.progress(self.stats.bytes);
                last_progress = Instant::now();
            }
        }
        self.exec.split.writes_idle();
        for mut o in self.open.drain(..) {
            if let Some(w) = o.writer.take() {
                w.abort();
            }
        }
    }

    fn open_object(&mut self, job: ObjectJob, fin_tx: &Sender<ToFinish<'s>>) {
        let exec = self.exec;
        if exec.walled() {
            let at = Instant::now();
            let cut = ObjectResult { name: job.name, size: 0, crc32c: None, latency: Duration::ZERO, at, cut: true };
            return self.cut(cut);
        }
        let max = exec.sink.capabilities().max_object;
        if job.size > max {
            return self.fail(Error::sink(
                exec.sink.describe(),
                format!(
                    "{}: {} is more than the {} this target takes for one object",
                    crate::input::sanitize(&job.name, 200),
                    crate::size::format_size(job.size),
                    crate::size::format_size(max)
                ),
            ));
        }
        let identity = crate::object::identity::Identity::of(&job.content, &exec.gen, job.size);
        match exec.sink.create(&job.name, Some(job.size), &identity) {
            Ok(writer) => {
                // A part the pool cannot hold whole could never be completed: say so instead of hanging.
                let part = writer.part_size().filter(|&p| p > exec.chunk as u64).unwrap_or(0);
                let needed = part.div_ceil(exec.chunk as u64);
                if needed > exec.pool.count() as u64 {
                    writer.abort();
                    return self.fail(Error::Resource(format!(
                        "{}: {} needs parts of {} but the buffer pool holds only {} ({} × {}): raise \
                         pipeline.buffers or pipeline.buffer_size",
                        exec.sink.describe(),
                        job.name,
                        crate::size::format_size(part),
                        crate::size::format_size(exec.pool.bytes()),
                        exec.pool.count(),
                        crate::size::format_size(exec.chunk as u64),
                    )));
                }
                let o = Open {
                    part,
                    id: self.next_id,
                    crc: CrcChain::default(),
                    job,
                    writer: Some(writer),
                    next: 0,
                    in_flight: 0,
                    written: 0,
                    started: Instant::now(),
                };
                self.next_id += 1;
                if o.job.size == 0 {
                    self.hand_to_finisher(o, fin_tx);
                } else {
                    self.open.push(o);
                }
            }
            Err(e) => self.fail(e),
        }
    }

    /// An object the stonewall stopped: reported like a finished one, flagged.
    fn cut(&mut self, r: ObjectResult) {
        match &self.done {
            Some(d) => {
                let _ = d.send(r);
            }
            None => self.stats.objects.push(r),
        }
    }

    /// With the wall up: every open object with no write in flight and not whole is aborted and
    /// reported cut (whole ones were handed to the finisher as their last write completed).
    fn cut_open(&mut self) {
        let mut i = 0;
        while i < self.open.len() {
            let o = &self.open[i];
            if o.in_flight == 0 && o.writer.is_some() && o.written < o.job.size {
                let mut o = self.open.swap_remove(i);
                if let Some(w) = o.writer.take() {
                    w.abort();
                }
                let (latency, at) = (o.started.elapsed(), Instant::now());
                self.cut(ObjectResult { name: o.job.name, size: o.written, crc32c: None, latency, at, cut: true });
            } else {
                i += 1;
            }
        }
    }

    /// Starts generating chunks while buffers are free; true if work was left for want of a buffer.
    fn schedule(&mut self) -> bool {
        let exec = self.exec;
        if exec.walled() {
            self.cut_open();
            return false;
        }
        while !self.open.is_empty() {
            // Generating ahead of the workers only spreads the data over more of the pool: one chunk per
            // worker keeps the buffers in use few enough to stay in the last-level cache (measured on
            // one core: 2 chunks per worker cost 6–10 %, all 16 buffers 30 %), and a sink that needs
            // more buffers holds them in flight, not here.
            if self.in_gen >= exec.cfg.threads {
                return false;
            }
            let n = self.open.len();
            // An object whose writer gathers writes into parts is filled one whole part at a time, so
            // buffers are never spread over half-built parts of several objects with none complete.
            let mid_part = self.open.iter().position(|o| o.part > 0 && o.next % o.part != 0 && o.next < o.job.size);
            let Some(k) = mid_part
                .or_else(|| (0..n).map(|i| (self.rr + i) % n).find(|&k| self.open[k].next < self.open[k].job.size))
            else {
                return false;
            };
            let Some(mut buf) = exec.pool.try_take() else {
                return true;
            };
            self.rr = k + 1;
            let o = &mut self.open[k];
            let at = o.next;
            let len = (exec.chunk as u64).min(o.job.size - at) as usize;
            o.next += len as u64;
            o.in_flight += 1;
            self.in_gen += 1;
            let (gen, content, tx, obj, crc) =
                (exec.gen.clone(), o.job.content.clone(), self.tx.clone(), o.id, exec.cfg.crc);
            exec.workers.spawn(move || {
                let t = Instant::now();
                let crc = fill_tiled(&content, &gen, at, &mut buf.as_mut_slice()[..len], crc);
                let _ = tx.send(Event::Generated { obj, chunk: at, len, buf, crc, took: t.elapsed() });
            });
        }
        false
    }

    #[allow(clippy::too_many_arguments)]
    fn generated(
        &mut self,
        obj: usize,
        chunk: u64,
        len: usize,
        buf: Buffer,
        crc: Option<u32>,
        took: Duration,
        cancel: &AtomicBool,
    ) {
        self.in_gen -= 1;
        self.exec.split.generated(took);
        let stopping = self.stopping(cancel);
        let Some(o) = self.open.iter_mut().find(|o| o.id == obj) else {
            return;
        };
        // With the wall up no new write starts (the object will be cut once its writes in flight end).
        if stopping || o.writer.is_none() || self.exec.walled() {
            o.in_flight -= 1;
            return; // dropping `buf` returns it to the pool
        }
        if let Some(c) = crc {
            o.crc.add(chunk, c, len as u64);
        }
        self.in_io += 1;
        self.exec.split.write_started();
        let tx = self.tx.clone();
        let submitted = Instant::now();
        let done = Box::new(move |result: Result<()>| {
            let _ = tx.send(Event::Written { obj, len, result, took: submitted.elapsed() });
        });
        o.writer.as_mut().expect("a writer until stopping").submit(WriteReq { offset: chunk, len, buf, done });
    }

    fn written(&mut self, obj: usize, len: usize, result: Result<()>, took: Duration, fin_tx: &Sender<ToFinish<'s>>) {
        self.in_io -= 1;
        self.exec.split.write_done();
        self.stats.ops += 1;
        let _ = self.stats.op_latency.record((took.as_micros() as u64).max(1));
        let Some(i) = self.open.iter().position(|o| o.id == obj) else {
            return;
        };
        self.open[i].in_flight -= 1;
        match result {
            Err(e) => self.fail(e),
            Ok(()) => {
                self.stats.bytes += len as u64;
                self.open[i].written += len as u64;
                let o = &self.open[i];
                if o.written == o.job.size && o.writer.is_some() && self.failure.is_none() {
                    let o = self.open.swap_remove(i);
                    self.hand_to_finisher(o, fin_tx);
                }
            }
        }
    }

    fn hand_to_finisher(&mut self, mut o: Open<'s>, fin_tx: &Sender<ToFinish<'s>>) {
        let exec = self.exec;
        let writer = o.writer.take().expect("open object has a writer");
        let crc32c = exec.cfg.crc.then_some(o.crc.prefix);
        let result = ObjectResult {
            name: o.job.name,
            size: o.job.size,
            crc32c,
            latency: Duration::ZERO,
            at: Instant::now(),
            cut: false,
        };
        self.finishing += 1;
        if let Err(e) = fin_tx.send(ToFinish { writer, result, started: o.started }) {
            // The finisher is gone (it cannot be, while we hold its channel); abort rather than leak.
            self.finishing -= 1;
            e.into_inner().writer.abort();
        }
    }
}

/// Bytes filled and checksummed per step: small enough that the CRC reads them from the core's L2
/// while they are still there, instead of re-reading the whole buffer from memory after the fill.
pub const TILE: usize = 128 << 10;

/// Fills `data` (bytes `at..` of `content`) tile by tile, with the CRC32C of each tile taken right after
/// it was made; returns the CRC32C of all of `data` when asked for.
pub fn fill_tiled(content: &Content, gen: &Generator, at: u64, data: &mut [u8], crc: bool) -> Option<u32> {
    if !crc {
        content.fill(gen, at, data);
        return None;
    }
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    for (i, tile) in data.chunks_mut(TILE).enumerate() {
        content.fill(gen, at + (i * TILE) as u64, tile);
        digest.update(tile);
    }
    Some(digest.finalize() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_chain_in_any_order_is_the_whole_objects_crc() {
        let data: Vec<u8> = (0..100_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let whole = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &data) as u32;
        let chunk = 4096;
        let mut pieces: Vec<(u64, &[u8])> =
            data.chunks(chunk).enumerate().map(|(i, c)| ((i * chunk) as u64, c)).collect();
        // Arrival order: reversed pairs, so most chunks come ahead of their predecessor.
        pieces.chunks_mut(2).for_each(|p| p.reverse());
        let mut chain = CrcChain::default();
        for (at, c) in pieces {
            chain.add(at, crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, c) as u32, c.len() as u64);
            assert!(chain.ahead.len() <= 1, "more held back than the chunks in flight");
        }
        assert_eq!(chain.done, data.len() as u64);
        assert_eq!(chain.prefix, whole);
    }
}
