//! `gen`'s pipeline: one generated stream written to stdout, a pipe, a file or the null sink, plain
//! or zstd-compressed — always through the [`Executor`], so every output gets the same buffer pool,
//! one rayon pool of generator threads, CRC32C taken while the data is in cache, progress and the
//! time split.
//!
//! The outputs differ only in the sink the executor writes to: a file or the null sink directly; a
//! byte stream ([`OrderedSink`]) for stdout and pipes; and for compression, a stream into a zstd
//! encoder whose output goes, through an [`ObjectStream`], to the file.

use crate::error::{Error, Result};
use crate::generator::Generator;
use crate::object::Content;
use crate::pipeline::executor::{ExecConfig, Executor, ObjectJob, Observer, PipelineStats};
use crate::pool::BufferPool;
use crate::sink::ordered::Plain;
use crate::sink::ordered::{OrderedSink, StreamOut};
use crate::sink::stream::ObjectStream;
use crate::sink::Sink;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where the stream goes.
pub enum Output<'a> {
    /// An `io::Write` taking the bytes in order (stdout, a pipe, a character device); `label` names
    /// it in messages.
    Writer { out: Box<dyn Write + Send>, label: String },
    /// Object `name` of `sink` (a file of a directory, or the null sink).
    Object { sink: &'a dyn Sink, name: String },
    /// The same, of a sink the output holds.
    Shared { sink: Arc<dyn Sink>, name: String },
}

/// How the stream is made.
#[derive(Clone, Debug)]
pub struct GenSpec {
    pub size: u64,
    /// Bytes per write, and buffers in the pool.
    pub buffer_size: usize,
    pub buffers: usize,
    /// Generator threads (zstd, when compressing, uses as many workers of its own).
    pub threads: usize,
    /// Compress the stream with zstd at this level (1–22).
    pub zstd_level: Option<i32>,
}

/// What a `gen` run did.
pub struct GenResult {
    pub stats: PipelineStats,
    /// CRC32C of the generated (uncompressed) stream.
    pub crc32c: u32,
    /// Bytes per write after rounding to the sink's needs, and the pool's shape.
    pub write_size: usize,
    pub pool_count: usize,
    pub pool_bytes: u64,
    /// With compression: compressed bytes out, and the writes that stored them in an object (0 for
    /// a stream, which takes them as they come).
    pub compressed: Option<(u64, u64)>,
}

/// Counts the bytes going through (the compressed size of a stream that is not an object).
struct Counting<W> {
    inner: W,
    bytes: Arc<AtomicU64>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A zstd encoder as the end of a stream. Closing it writes the last frame and hands the writer
/// under it to `then` (flush a pipe; finish an object).
struct Zstd<W: Write + Send, F: FnOnce(W) -> io::Result<()> + Send> {
    encoder: zstd::stream::write::Encoder<'static, W>,
    then: F,
}

impl<W: Write + Send, F: FnOnce(W) -> io::Result<()> + Send> Write for Zstd<W, F> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.encoder.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

impl<W: Write + Send, F: FnOnce(W) -> io::Result<()> + Send> StreamOut for Zstd<W, F> {
    fn close(self: Box<Self>) -> io::Result<()> {
        let Zstd { encoder, then } = *self;
        then(encoder.finish()?)
    }
}

fn zstd<W: Write + Send, F: FnOnce(W) -> io::Result<()> + Send>(
    out: W,
    level: i32,
    threads: usize,
    then: F,
) -> io::Result<Zstd<W, F>> {
    let mut encoder = zstd::stream::write::Encoder::new(out, level)?;
    encoder.multithread(threads as u32)?;
    Ok(Zstd { encoder, then })
}

/// Writes `spec.size` bytes of stream 0 of `gen` to `output`.
pub fn generate(
    gen: &Generator,
    spec: &GenSpec,
    output: Output<'_>,
    observer: &mut dyn Observer,
    cancel: &AtomicBool,
) -> Result<GenResult> {
    let cfg = ExecConfig {
        buffer_size: spec.buffer_size,
        buffers: spec.buffers,
        threads: spec.threads,
        open_objects: 1,
        crc: true,
    };
    let job = |name: String| ObjectJob { name, size: spec.size, content: Content::Stream { stream: 0, offset: 0 } };
    let run = |sink: &dyn Sink, name: String, observer: &mut dyn Observer| -> Result<(PipelineStats, Shape)> {
        let exec = Executor::new(sink, gen.clone(), cfg.clone())?;
        let shape = Shape { write_size: exec.write_size(), count: exec.pool().count(), bytes: exec.pool().bytes() };
        Ok((exec.run([job(name)], observer, cancel)?, shape))
    };
    let starting =
        |label: &str, e: io::Error| Error::io(label, io::Error::new(e.kind(), format!("starting zstd: {e}")));
    let held;
    let output: Output<'_> = match output {
        Output::Shared { sink, name } => {
            held = sink;
            Output::Object { sink: &*held, name }
        }
        other => other,
    };
    let (stats, shape, compressed) = match (output, spec.zstd_level) {
        (Output::Object { sink, name }, None) => {
            let (stats, shape) = run(sink, name, observer)?;
            (stats, shape, None)
        }
        (Output::Writer { out, label }, None) => {
            let sink = OrderedSink::new(label, Box::new(Plain(out)));
            let (stats, shape) = run(&sink, "stream".into(), observer)?;
            (stats, shape, None)
        }
        (Output::Writer { out, label }, Some(level)) => {
            let bytes = Arc::new(AtomicU64::new(0));
            let counted = Counting { inner: out, bytes: bytes.clone() };
            let end =
                zstd(counted, level, spec.threads, |mut w: Counting<_>| w.flush()).map_err(|e| starting(&label, e))?;
            let sink = OrderedSink::new(label, Box::new(end));
            let (stats, shape) = run(&sink, "stream".into(), observer)?;
            (stats, shape, Some((bytes.load(Ordering::Relaxed), 0)))
        }
        (Output::Shared { .. }, _) => unreachable!("taken as an object above"),
        (Output::Object { sink, name }, Some(level)) => {
            // The compressed bytes go to the object through a small pool of their own, so that the
            // generator's buffers, which the stream holds in order, can never starve them.
            let label = format!("{}/{name}", sink.describe());
            let caps = sink.capabilities();
            let chunk = crate::pipeline::executor::buffer_size_for(&caps, spec.buffer_size);
            let pool = BufferPool::new(4, chunk, caps.alignment).map_err(Error::pool)?;
            let plain =
                crate::object::identity::Identity::of(&Content::Stream { stream: 0, offset: 0 }, gen, spec.size);
            let identity = plain.derived(&format!("zstd -{level}"));
            let stream = ObjectStream::new(sink.create(&name, None, &identity)?, pool);
            let stored: Arc<Mutex<Option<Result<Stored>>>> = Arc::default();
            let keep = stored.clone();
            let end = zstd(stream, level, spec.threads, move |stream: ObjectStream<'_>| {
                let ops = stream.ops;
                let r = stream.finish().map(|size| (size, ops));
                let failed = r.as_ref().err().map(|e| io::Error::other(e.to_string()));
                *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                failed.map_or(Ok(()), Err)
            })
            .map_err(|e| starting(&label, e))?;
            let ordered = OrderedSink::new(label.clone(), Box::new(end));
            let ran = run(&ordered, name, observer);
            // The object's own error (a full disk, say) says more than the stream's copy of it.
            let stored = stored.lock().unwrap_or_else(|e| e.into_inner()).take();
            match (ran, stored) {
                (_, Some(Err(e))) | (Err(e), _) => return Err(e),
                (Ok((stats, shape)), Some(Ok(size_ops))) => (stats, shape, Some(size_ops)),
                (Ok(_), None) => return Err(Error::sink(&label, "the compressed stream was never closed")),
            }
        }
    };
    Ok(GenResult {
        crc32c: stats.objects.first().and_then(|o| o.crc32c).unwrap_or(0),
        write_size: shape.write_size,
        pool_count: shape.count,
        pool_bytes: shape.bytes,
        compressed,
        stats,
    })
}

/// Bytes an object ended up with, and the writes that stored them.
type Stored = (u64, u64);

struct Shape {
    write_size: usize,
    count: usize,
    bytes: u64,
}
