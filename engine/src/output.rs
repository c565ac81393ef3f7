//! Streaming a generated stream into any `io::Write` (stdout, a pipe, a plain file), with generation and
//! writing overlapped: rayon workers fill one buffer while this thread's writer drains the other.

use crate::gen::Generator;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a streaming write did.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamStats {
    pub bytes: u64,
    pub elapsed: Duration,
}

/// How a stream is pumped: generator threads, buffer size, and the cancellation flag.
pub struct Pump<'a> {
    pub pool: &'a rayon::ThreadPool,
    pub buffer_size: usize,
    /// Set (by Ctrl-C) to stop early with an `Interrupted` error.
    pub cancel: &'a AtomicBool,
}

/// Writes bytes `[0, len)` of `stream` to `out`. `each` sees every buffer before it is written
/// (checksums, progress).
pub fn write_stream(
    gen: &Generator,
    stream: u64,
    len: u64,
    out: &mut dyn Write,
    pump: &Pump,
    each: &mut dyn FnMut(&[u8]),
) -> io::Result<StreamStats> {
    let start = Instant::now();
    let (pool, cancel) = (pump.pool, pump.cancel);
    let buffer_size = pump.buffer_size.max(1);
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(1);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..2 {
        empty_tx.send(vec![0u8; buffer_size.min(len.max(1) as usize)]).ok();
    }
    let mut stats = StreamStats::default();
    let result = std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut pos = 0u64;
            while pos < len {
                let Ok(mut buf) = empty_rx.recv() else { return };
                let n = (buf.len() as u64).min(len - pos) as usize;
                pool.install(|| gen.fill_par(stream, pos, &mut buf[..n]));
                pos += n as u64;
                if full_tx.send((buf, n)).is_err() {
                    return;
                }
            }
        });
        let mut result = Ok(());
        for (buf, n) in full_rx.iter() {
            if cancel.load(Ordering::Relaxed) {
                result = Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
                break;
            }
            each(&buf[..n]);
            if let Err(e) = out.write_all(&buf[..n]) {
                result = Err(e);
                break;
            }
            stats.bytes += n as u64;
            empty_tx.send(buf).ok();
        }
        // Dropping the receivers stops the producer if the writer failed.
        drop(full_rx);
        drop(empty_tx);
        producer.join().expect("generator thread panicked");
        result
    });
    result?;
    out.flush()?;
    stats.elapsed = start.elapsed();
    Ok(stats)
}
