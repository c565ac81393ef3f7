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
use crate::pool::BufferPool;
use crate::sink::{Capabilities, Sink};
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
pub struct PipelineStats {
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

mod run;

use run::{Coordinator, Event, ToFinish};

/// Runs object writes through a pool against one sink.
pub struct Executor<'s> {
    sink: &'s dyn Sink,
    gen: Arc<Generator>,
    pool: BufferPool,
    workers: rayon::ThreadPool,
    cfg: ExecConfig,
    write_size: usize,
    /// The CRC32C is taken on the coordinator's thread as each chunk arrives, not on the generator
    /// thread that made it: when the generator threads leave a core free, so the generator never
    /// pauses for it.
    crc_aside: bool,
    split: Arc<TimeSplit>,
    wall: Option<Arc<crate::world::Wall>>,
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
        let pool = BufferPool::new(cfg.buffers, size, align).map_err(Error::pool)?;
        sink.use_pool(&pool);
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("dgen-gen-{i}"))
            .build()
            .map_err(|e| Error::resource_from("cannot start generator threads", e))?;
        let crc_aside = cfg.crc && cfg.threads < std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Executor {
            sink,
            gen: Arc::new(gen),
            pool,
            workers,
            cfg,
            write_size: size,
            crc_aside,
            split: Arc::default(),
            wall: None,
        })
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
    pub fn write_size(&self) -> usize {
        self.write_size
    }

    /// Writes every job; on error or cancellation aborts the objects still open and returns the error.
    pub fn run(
        &self,
        jobs: impl IntoIterator<Item = ObjectJob>,
        observer: &mut dyn Observer,
        cancel: &AtomicBool,
    ) -> Result<PipelineStats> {
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
    ) -> Result<PipelineStats> {
        let start = Instant::now();
        // Where the time went is what the split's counters gained over this run.
        let split_at_start = self.split.snapshot();
        let (tx, rx) = crossbeam_channel::unbounded::<Event>();
        let (fin_tx, fin_rx) = crossbeam_channel::unbounded::<ToFinish<'s>>();
        let mut run = Coordinator {
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
            stats: PipelineStats {
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
