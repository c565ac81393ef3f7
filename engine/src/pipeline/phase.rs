//! Named phases of a run (`save`, `restore`, …): each gathers the figures of the operations started
//! while it was current — objects written, reads, stats, lists and deletes — so that one run that
//! saves, pauses and restores reports each direction on its own, as fio's job groups or warp's
//! operation types do.
//!
//! A phase's time runs from its start to the last of its operations done (to its end, when it had
//! none): the same definition the run's headline uses, so a trailing `pause` or the plugin's own
//! bookkeeping does not dilute its throughput.
//!
//! Where a phase's time went is taken from one [`TimeSplit`] the run's generator, writer and reader
//! threads add to as they work: a phase's split is what was added between its start and its end
//! (the wall-clock window, where its operations are counted by issue time), so the split of a save
//! phase shows its writes and generation, and a restore phase's its read calls and checks.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wall time with at least one operation of a kind in flight, readable while it runs.
#[derive(Default)]
struct Busy {
    inner: Mutex<(usize, Option<Instant>, Duration)>,
}

impl Busy {
    fn enter(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        if g.0 == 1 {
            g.1 = Some(Instant::now());
        }
    }

    fn leave(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = g.0.saturating_sub(1);
        if g.0 == 0 {
            if let Some(t) = g.1.take() {
                g.2 += t.elapsed();
            }
        }
    }

    /// Nothing is in flight any more (those that never reported back included).
    fn idle(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = 0;
        if let Some(t) = g.1.take() {
            g.2 += t.elapsed();
        }
    }

    /// So far, the interval still open included.
    fn total(&self) -> Duration {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.2 + g.1.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

/// The run's time counters, shared by the threads that do its work.
#[derive(Default)]
pub struct TimeSplit {
    generate_ns: AtomicU64,
    write_wait_ns: AtomicU64,
    read_io_ns: AtomicU64,
    check_ns: AtomicU64,
    read_wait_ns: AtomicU64,
    writes: Busy,
    reads: Busy,
}

fn add(a: &AtomicU64, d: Duration) {
    a.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> Duration {
    Duration::from_nanos(a.load(Ordering::Relaxed))
}

impl TimeSplit {
    /// Thread time generating (and checksumming) data to write.
    pub fn generated(&self, d: Duration) {
        add(&self.generate_ns, d);
    }
    /// Wall time the write pipeline had work but no free buffer while writes held them.
    pub fn write_waited(&self, d: Duration) {
        add(&self.write_wait_ns, d);
    }
    pub fn write_started(&self) {
        self.writes.enter();
    }
    pub fn write_done(&self) {
        self.writes.leave();
    }
    /// The writer stopped: no write is in flight any more.
    pub fn writes_idle(&self) {
        self.writes.idle();
    }
    /// A reader thread's time in one read call (storage), in checking what it read, and waiting
    /// for a pool buffer to read into.
    pub fn read_io(&self, d: Duration) {
        add(&self.read_io_ns, d);
    }
    pub fn checked(&self, d: Duration) {
        add(&self.check_ns, d);
    }
    pub fn read_waited(&self, d: Duration) {
        add(&self.read_wait_ns, d);
    }
    pub fn read_started(&self) {
        self.reads.enter();
    }
    pub fn read_done(&self) {
        self.reads.leave();
    }

    pub fn snapshot(&self) -> Split {
        Split {
            generate: get(&self.generate_ns),
            writes_in_flight: self.writes.total(),
            write_buffer_wait: get(&self.write_wait_ns),
            reads_in_flight: self.reads.total(),
            read_calls: get(&self.read_io_ns),
            check: get(&self.check_ns),
            read_buffer_wait: get(&self.read_wait_ns),
        }
    }
}

/// Where time went over some window: wall time with writes (reads) in flight, and thread time
/// generating, in read calls, checking, and waiting for buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Split {
    pub generate: Duration,
    pub writes_in_flight: Duration,
    pub write_buffer_wait: Duration,
    pub reads_in_flight: Duration,
    pub read_calls: Duration,
    pub check: Duration,
    pub read_buffer_wait: Duration,
}

impl Split {
    /// What was added since `earlier`.
    pub fn since(&self, earlier: &Split) -> Split {
        Split {
            generate: self.generate.saturating_sub(earlier.generate),
            writes_in_flight: self.writes_in_flight.saturating_sub(earlier.writes_in_flight),
            write_buffer_wait: self.write_buffer_wait.saturating_sub(earlier.write_buffer_wait),
            reads_in_flight: self.reads_in_flight.saturating_sub(earlier.reads_in_flight),
            read_calls: self.read_calls.saturating_sub(earlier.read_calls),
            check: self.check.saturating_sub(earlier.check),
            read_buffer_wait: self.read_buffer_wait.saturating_sub(earlier.read_buffer_wait),
        }
    }
}

/// The longest phase name, bytes.
pub const MAX_PHASE_NAME: usize = 64;

/// The figures of one phase.
#[derive(Clone, Debug)]
pub struct Phase {
    pub name: String,
    pub started: Instant,
    /// When the next phase started, or the run ended.
    pub ended: Option<Instant>,
    /// When the last of its operations finished.
    pub last_done: Option<Instant>,
    /// What it did: bytes and operations, failed reads, what a stonewall cut.
    pub counts: Counters,
    /// Every operation's latency (objects: open to durable; reads: issue to last byte checked), µs.
    pub latency: Histogram<u64>,
    /// Reads' time to first byte, µs.
    pub ttfb: Histogram<u64>,
    /// Over the objects its reads opened: the bytes the local cache held then (share × size summed),
    /// and their size.
    pub cached_bytes: f64,
    pub opened_bytes: u64,
    /// Whether any of its reads could tell (files can; object stores cannot).
    pub cache_known: bool,
    /// The run's counters when it started, and (once ended) what was added over it.
    pub split_at_start: Split,
    pub split: Split,
    /// Bytes done over time since its start, for stonewalled figures across ranks.
    pub timeline: Timeline,
    /// Stonewalling ended it here: seconds from its start when another rank finished it first,
    /// and which rank that was.
    pub stonewalled: Option<(f64, u32)>,
    /// The jobs of the operations engine run in it (contract 1.2), if any.
    pub ops: Option<Box<crate::ops::record::PhaseOps>>,
}

/// What a stretch of a run did, counted: the one set of counters a phase, a rank's phase and a
/// phase merged over ranks all carry (and the JSON report's phases show under these names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Bytes written, and objects written (whole, or cut by a stonewall).
    pub written: u64,
    pub writes: u64,
    /// Bytes read, and reads done. (`read_bytes` in JSON: a phase's `read` is the operations
    /// engine's figures of its reads, as fio names them.)
    #[serde(rename = "read_bytes", alias = "read")]
    pub read: u64,
    pub reads: u64,
    /// Stats, lists and deletes.
    pub meta_ops: u64,
    /// Reads whose check failed.
    pub read_failures: u64,
    /// Objects and reads the stonewall cut short (their bytes so far are in `written` / `read`).
    #[serde(default)]
    pub cut_objects: u64,
    #[serde(default)]
    pub cut_reads: u64,
}

impl Counters {
    pub fn bytes(&self) -> u64 {
        self.written + self.read
    }

    pub fn ops(&self) -> u64 {
        self.writes + self.reads + self.meta_ops
    }

    /// Adds another stretch's counts (another rank's, for a merged phase).
    pub fn add(&mut self, o: &Counters) {
        self.written += o.written;
        self.writes += o.writes;
        self.read += o.read;
        self.reads += o.reads;
        self.meta_ops += o.meta_ops;
        self.read_failures += o.read_failures;
        self.cut_objects += o.cut_objects;
        self.cut_reads += o.cut_reads;
    }
}

/// Bytes of finished operations per time bucket since a phase started: 1024 buckets at most, each
/// 10 ms at first and doubling (neighbours merged) whenever the phase outgrows them, so a phase of
/// any length costs 8 KiB and its curve keeps 0.1 % resolution.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timeline {
    pub bucket_ms: u64,
    pub bytes: Vec<u64>,
}

const TIMELINE_BUCKETS: usize = 1024;

impl Default for Timeline {
    fn default() -> Self {
        Timeline { bucket_ms: 10, bytes: Vec::new() }
    }
}

impl Timeline {
    /// `bytes` finished `ms` after the start.
    pub fn add(&mut self, ms: u64, bytes: u64) {
        while ms / self.bucket_ms >= TIMELINE_BUCKETS as u64 {
            self.bytes = self.bytes.chunks(2).map(|c| c.iter().sum()).collect();
            self.bucket_ms *= 2;
        }
        let i = (ms / self.bucket_ms) as usize;
        if self.bytes.len() <= i {
            self.bytes.resize(i + 1, 0);
        }
        self.bytes[i] += bytes;
    }

    /// Bytes finished within the first `s` seconds, to a bucket: a bucket counts when it starts
    /// before then (so the rank whose end this is counts all of its own bytes).
    pub fn by(&self, s: f64) -> u64 {
        let buckets = ((s * 1000.0) / self.bucket_ms as f64).ceil() as usize;
        self.bytes.iter().take(buckets.max(1)).sum()
    }
}

impl Phase {
    pub fn new(name: String, started: Instant) -> Phase {
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
        Phase {
            name,
            started,
            ended: None,
            last_done: None,
            counts: Counters::default(),
            latency: h(),
            ttfb: h(),
            cached_bytes: 0.0,
            opened_bytes: 0,
            cache_known: false,
            split_at_start: Split::default(),
            split: Split::default(),
            timeline: Timeline::default(),
            stonewalled: None,
            ops: None,
        }
    }

    /// Starts its time split at the run's counters now.
    pub fn with_split(mut self, now: Split) -> Phase {
        self.split_at_start = now;
        self
    }

    /// It ended at `at`, the run's counters then being `now`.
    pub fn end(&mut self, at: Instant, now: Split) {
        if self.ended.is_none() {
            self.ended = Some(at);
            self.split = now.since(&self.split_at_start);
        }
    }

    /// Its wall-clock window, start to end (or now).
    pub fn window(&self) -> Duration {
        self.ended.unwrap_or_else(Instant::now).saturating_duration_since(self.started)
    }

    /// One operation of `bytes` finished at `at`, taking `latency`.
    pub fn done(&mut self, at: Instant, latency: Duration, bytes: u64) {
        self.timeline.add(at.saturating_duration_since(self.started).as_millis() as u64, bytes);
        self.last_done = Some(self.last_done.map_or(at, |t| t.max(at)));
        let _ = self.latency.record((latency.as_micros() as u64).clamp(1, 3_600_000_000));
    }

    /// For a read phase on files: the share of its files' pages in the page cache as they were
    /// opened (after a `cache = "drop"`, what the reads could still find in memory).
    pub fn cached_fraction(&self) -> Option<f64> {
        self.cache_known
            .then(|| if self.opened_bytes == 0 { 0.0 } else { self.cached_bytes / self.opened_bytes as f64 })
    }

    pub fn bytes(&self) -> u64 {
        self.counts.bytes()
    }

    pub fn ops(&self) -> u64 {
        self.counts.ops()
    }

    /// From its start to its last operation done (or to its end).
    pub fn seconds(&self) -> f64 {
        let end = self.last_done.or(self.ended).unwrap_or_else(Instant::now);
        end.saturating_duration_since(self.started).as_secs_f64()
    }

    pub fn gbps(&self) -> f64 {
        self.bytes() as f64 / self.seconds().max(1e-9) / 1e9
    }

    /// Latency percentile, µs (0 without operations).
    pub fn latency_us(&self, q: f64) -> u64 {
        if self.latency.is_empty() {
            0
        } else {
            self.latency.value_at_quantile(q)
        }
    }

    pub fn latency_max_us(&self) -> u64 {
        self.latency.max()
    }
}

#[cfg(test)]
mod tests {
    use super::Timeline;

    #[test]
    fn a_timeline_keeps_its_bytes_and_its_size_as_the_phase_grows() {
        let mut t = Timeline::default();
        t.add(5, 100);
        t.add(25, 50);
        assert_eq!((t.by(0.01), t.by(0.03)), (100, 150));
        // An hour in: buckets have doubled, nothing was lost, the size stays bounded.
        t.add(3_600_000, 7);
        assert!(t.bytes.len() <= 1024 && t.bucket_ms >= 3_600_000 / 1024, "{} x {}", t.bytes.len(), t.bucket_ms);
        assert_eq!(t.bytes.iter().sum::<u64>(), 157);
        assert_eq!((t.by(3590.0), t.by(3700.0)), (150, 157));
    }
}
