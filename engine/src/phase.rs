//! Named phases of a run (`save`, `restore`, …): each gathers the figures of the operations started
//! while it was current — objects written, reads, stats, lists and deletes — so that one run that
//! saves, pauses and restores reports each direction on its own, as fio's job groups or warp's
//! operation types do.
//!
//! A phase's time runs from its start to the last of its operations done (to its end, when it had
//! none): the same definition the run's headline uses, so a trailing `pause` or the plugin's own
//! bookkeeping does not dilute its throughput.

use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

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
    pub written: u64,
    pub writes: u64,
    pub read: u64,
    pub reads: u64,
    /// Reads whose check failed.
    pub read_failures: u64,
    /// Stats, lists and deletes.
    pub meta_ops: u64,
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
}

impl Phase {
    pub fn new(name: String, started: Instant) -> Phase {
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
        Phase {
            name,
            started,
            ended: None,
            last_done: None,
            written: 0,
            writes: 0,
            read: 0,
            reads: 0,
            read_failures: 0,
            meta_ops: 0,
            latency: h(),
            ttfb: h(),
            cached_bytes: 0.0,
            opened_bytes: 0,
            cache_known: false,
        }
    }

    /// One operation finished at `at`, taking `latency`.
    pub fn done(&mut self, at: Instant, latency: Duration) {
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
        self.written + self.read
    }

    pub fn ops(&self) -> u64 {
        self.writes + self.reads + self.meta_ops
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
