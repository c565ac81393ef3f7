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

use crate::error::{Error, Result};
use crate::gen::Generator;
use crate::pool::{Buffer, BufferPool};
use crate::sink::{ObjectWriter, Sink, WriteReq};
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

/// What an object's bytes are.
#[derive(Clone, Debug)]
pub enum Content {
    /// Bytes `[offset, offset + size)` of one generator stream.
    Stream { stream: u64, offset: u64 },
}

impl Content {
    fn fill(&self, gen: &Generator, at: u64, buf: &mut [u8]) {
        match self {
            Content::Stream { stream, offset } => gen.fill(*stream, offset + at, buf),
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
    pub objects: Vec<ObjectResult>,
    pub pool_bytes: u64,
}

/// Receives progress (bytes written so far) now and then.
pub trait Observer {
    fn progress(&mut self, _bytes: u64) {}
}

impl Observer for () {}

enum Event {
    Generated {
        obj: usize,
        chunk: u64,
        len: usize,
        buf: Buffer,
        crc: Option<u32>,
        took: Duration,
    },
    Written {
        obj: usize,
        len: usize,
        result: Result<()>,
        took: Duration,
    },
}

struct Open<'s> {
    id: usize,
    job: ObjectJob,
    writer: Option<Box<dyn ObjectWriter + 's>>,
    next: u64,
    in_flight: usize,
    written: u64,
    crcs: Vec<Option<u32>>,
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
}

impl<'s> Executor<'s> {
    pub fn new(sink: &'s dyn Sink, gen: Generator, mut cfg: ExecConfig) -> Result<Executor<'s>> {
        let caps = sink.capabilities();
        let align = caps.alignment.max(4096);
        let min = (caps.min_write as usize).max(1);
        let size = cfg.buffer_size.max(min).div_ceil(align) * align;
        cfg.buffers = cfg.buffers.max(1);
        cfg.threads = cfg.threads.max(1);
        cfg.open_objects = cfg.open_objects.max(1);
        let pool = BufferPool::new(cfg.buffers, size, align)
            .map_err(|e| Error::Resource(e.to_string()))?;
        sink.use_pool(&pool);
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("dgen-gen-{i}"))
            .build()
            .map_err(|e| Error::Resource(format!("cannot start generator threads: {e}")))?;
        Ok(Executor {
            sink,
            gen: Arc::new(gen),
            pool,
            workers,
            cfg,
            chunk: size,
        })
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
        let start = Instant::now();
        let (tx, rx) = crossbeam_channel::unbounded::<Event>();
        let mut jobs = jobs.into_iter();
        let mut jobs_left = true;
        let mut open: Vec<Open<'s>> = Vec::new();
        let mut next_id = 0usize;
        let mut rr = 0usize;
        let mut in_gen = 0usize;
        let mut in_io = 0usize;
        let mut io_since: Option<Instant> = None;
        let mut failure: Option<Error> = None;
        let mut last_progress = Instant::now();
        let mut stats = RunStats {
            bytes: 0,
            ops: 0,
            elapsed: Duration::ZERO,
            generate: Duration::ZERO,
            threads: self.cfg.threads,
            io_busy: Duration::ZERO,
            buffer_wait: Duration::ZERO,
            op_latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
            objects: Vec::new(),
            pool_bytes: self.pool.bytes(),
        };
        loop {
            let stopping = failure.is_some() || cancel.load(Ordering::Relaxed);
            // Open objects up to the limit.
            while !stopping && jobs_left && open.len() < self.cfg.open_objects {
                let Some(job) = jobs.next() else {
                    jobs_left = false;
                    break;
                };
                match self.sink.create(&job.name, Some(job.size)) {
                    Ok(writer) => {
                        let chunks = job.size.div_ceil(self.chunk as u64) as usize;
                        open.push(Open {
                            id: next_id,
                            crcs: if self.cfg.crc {
                                vec![None; chunks]
                            } else {
                                Vec::new()
                            },
                            job,
                            writer: Some(writer),
                            next: 0,
                            in_flight: 0,
                            written: 0,
                            started: Instant::now(),
                        });
                        next_id += 1;
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            // Empty objects are done as soon as they are open.
            if failure.is_none() {
                let mut i = 0;
                while i < open.len() {
                    if open[i].job.size == 0 {
                        let o = open.swap_remove(i);
                        if let Err(e) = self.finish(o, &mut stats) {
                            failure = Some(e);
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            let stopping = failure.is_some() || cancel.load(Ordering::Relaxed);
            // Schedule chunks, round-robin over open objects.
            let mut starved = false;
            while !stopping && !open.is_empty() {
                let n = open.len();
                let Some(k) = (0..n)
                    .map(|i| (rr + i) % n)
                    .find(|&k| open[k].next < open[k].job.size)
                else {
                    break;
                };
                let Some(mut buf) = self.pool.try_take() else {
                    starved = true;
                    break;
                };
                rr = k + 1;
                let o = &mut open[k];
                let at = o.next;
                let len = (self.chunk as u64).min(o.job.size - at) as usize;
                o.next += len as u64;
                o.in_flight += 1;
                in_gen += 1;
                let (gen, content, tx, obj, crc) = (
                    self.gen.clone(),
                    o.job.content.clone(),
                    tx.clone(),
                    o.id,
                    self.cfg.crc,
                );
                self.workers.spawn(move || {
                    let t = Instant::now();
                    let data = &mut buf.as_mut_slice()[..len];
                    content.fill(&gen, at, data);
                    let crc = crc.then(|| {
                        crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
                    });
                    let _ = tx.send(Event::Generated {
                        obj,
                        chunk: at,
                        len,
                        buf,
                        crc,
                        took: t.elapsed(),
                    });
                });
            }
            if in_gen == 0 && in_io == 0 {
                if stopping {
                    break;
                }
                if open.is_empty() && !jobs_left {
                    break;
                }
            }
            // Wait for something to happen.
            let waited = Instant::now();
            let event = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(e) => Some(e),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    unreachable!("we hold a sender")
                }
            };
            if starved {
                stats.buffer_wait += waited.elapsed();
            }
            let Some(event) = event else { continue };
            match event {
                Event::Generated {
                    obj,
                    chunk,
                    len,
                    buf,
                    crc,
                    took,
                } => {
                    in_gen -= 1;
                    stats.generate += took;
                    let Some(o) = open.iter_mut().find(|o| o.id == obj) else {
                        continue;
                    };
                    if failure.is_some() || cancel.load(Ordering::Relaxed) {
                        o.in_flight -= 1;
                        continue; // dropping `buf` returns it
                    }
                    if let Some(c) = crc {
                        o.crcs[(chunk / self.chunk as u64) as usize] = Some(c);
                    }
                    in_io += 1;
                    if in_io == 1 {
                        io_since = Some(Instant::now());
                    }
                    let tx = tx.clone();
                    let submitted = Instant::now();
                    let done = Box::new(move |buf: Buffer, result: Result<()>| {
                        drop(buf);
                        let _ = tx.send(Event::Written {
                            obj,
                            len,
                            result,
                            took: submitted.elapsed(),
                        });
                    });
                    o.writer
                        .as_mut()
                        .expect("open object has a writer")
                        .submit(WriteReq {
                            offset: chunk,
                            len,
                            buf,
                            done,
                        });
                }
                Event::Written {
                    obj,
                    len,
                    result,
                    took,
                } => {
                    in_io -= 1;
                    if in_io == 0 {
                        if let Some(t) = io_since.take() {
                            stats.io_busy += t.elapsed();
                        }
                    }
                    stats.ops += 1;
                    let _ = stats.op_latency.record((took.as_micros() as u64).max(1));
                    let Some(i) = open.iter().position(|o| o.id == obj) else {
                        continue;
                    };
                    open[i].in_flight -= 1;
                    match result {
                        Err(e) => {
                            if failure.is_none() {
                                failure = Some(e);
                            }
                        }
                        Ok(()) => {
                            stats.bytes += len as u64;
                            open[i].written += len as u64;
                            if open[i].written == open[i].job.size && failure.is_none() {
                                let o = open.swap_remove(i);
                                if let Err(e) = self.finish(o, &mut stats) {
                                    failure = Some(e);
                                }
                            }
                        }
                    }
                    if last_progress.elapsed() >= Duration::from_millis(100) {
                        observer.progress(stats.bytes);
                        last_progress = Instant::now();
                    }
                }
            }
        }
        if let Some(t) = io_since.take() {
            stats.io_busy += t.elapsed();
        }
        for mut o in open.drain(..) {
            if let Some(w) = o.writer.take() {
                w.abort();
            }
        }
        observer.progress(stats.bytes);
        if let Some(e) = failure {
            return Err(e);
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        stats.elapsed = start.elapsed();
        Ok(stats)
    }

    fn finish(&self, mut o: Open<'s>, stats: &mut RunStats) -> Result<()> {
        let writer = o.writer.take().expect("open object has a writer");
        writer.finish(o.job.size)?;
        let crc32c = self
            .cfg
            .crc
            .then(|| combine_crcs(&o.crcs, o.job.size, self.chunk as u64));
        stats.objects.push(ObjectResult {
            name: o.job.name,
            size: o.job.size,
            crc32c,
            latency: o.started.elapsed(),
        });
        Ok(())
    }
}

/// The CRC32C of a whole object from the CRCs of its fixed-size chunks.
fn combine_crcs(crcs: &[Option<u32>], size: u64, chunk: u64) -> u32 {
    let mut acc: Option<u64> = None;
    for (i, c) in crcs.iter().enumerate() {
        let c = c.expect("every chunk was checksummed") as u64;
        let len = chunk.min(size - i as u64 * chunk);
        acc = Some(match acc {
            None => c,
            Some(a) => crc_fast::checksum_combine(crc_fast::CrcAlgorithm::Crc32Iscsi, a, c, len),
        });
    }
    acc.unwrap_or(0) as u32
}
