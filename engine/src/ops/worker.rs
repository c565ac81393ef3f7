//! One stream of operations, whatever drives it (an io_uring ring or a pread/pwrite thread): what
//! the next operation is (and when it may start, under a rate cap), the bytes a write carries, and
//! what a completion records. The drivers only move bytes.

use super::genmap::{GenMap, Release, BUSY};
use super::journal::Journal;
use super::pattern::Picker;
use super::spec::OpKind;
use super::stats::{new_kinds, Kinds, SeriesBuilder};
use super::Region;
use crate::error::Error;
use crate::generator::region::RegionData;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What all workers of a job share.
pub(super) struct Shared<'a> {
    pub region: &'a Region,
    pub data: &'a RegionData,
    pub map: &'a GenMap,
    pub journal: Option<&'a Journal>,
    /// Writes go through the page cache: acknowledged is not durable until an fsync.
    pub buffered: bool,
    pub series: &'a Mutex<SeriesBuilder>,
    pub start: Instant,
    pub ramp_ns: u64,
    pub interval_ns: u64,
    /// No operation starts after this.
    pub end: Option<Instant>,
    pub cancel: &'a AtomicBool,
    /// A worker failed: the others stop too.
    pub failed: &'a AtomicBool,
}

/// Where a worker's operations come from.
pub(super) enum Feed {
    /// The job's mix.
    Mix(Picker),
    /// One pass over `[next, end)` in operations of `bs` (the last may be shorter): a prefill.
    Sweep { next: u64, end: u64, bs: u64, op: OpKind },
}

/// An operation in flight.
#[derive(Clone, Copy, Debug)]
pub(super) struct Op {
    pub kind: OpKind,
    /// Region-relative.
    pub offset: u64,
    pub len: u64,
    /// Latency is measured from here: the intended start under a rate cap, else the issue.
    pub start: Instant,
    /// An fsync: the buffered writes it makes durable (those acknowledged before it was issued,
    /// counted from the worker's first).
    pub covers: u64,
}

/// What a worker does next.
pub(super) enum Next {
    Op(Op),
    /// Nothing may start before then (a rate cap, or every block it drew is being written).
    Wait(Instant),
    /// Its share is done, or the job is stopping.
    Done,
}

pub(super) struct Worker<'a> {
    sh: &'a Shared<'a>,
    /// Its index among the job's workers (a series contributor).
    index: usize,
    feed: Feed,
    /// Operations it may still start (None: until the end time).
    quota: Option<u64>,
    /// Per worker: operations and bytes per second.
    rate_iops: Option<f64>,
    rate_bytes: Option<f64>,
    issued: u64,
    issued_bytes: u64,
    fsync_every: u64,
    writes_since_sync: u64,
    /// Where its last write went (its fsyncs go to that write's file).
    last_write_at: u64,
    /// After the ramp.
    pub totals: Kinds,
    interval: Kinds,
    current: u64,
    /// Nanoseconds from the job's start to its last completion.
    pub last_done_ns: u64,
    pub error: Option<Error>,
    /// Buffered writes acknowledged but not yet made durable by an fsync, in order (only with a
    /// journal: their blocks stay claimed until then); `confirmed` counts those before them.
    unconfirmed: std::collections::VecDeque<(u64, u64)>,
    confirmed: u64,
    /// An fsync is in flight to confirm them.
    syncing: bool,
}

/// Buffered writes a worker with a journal lets wait for an fsync before it issues one itself.
const MAX_UNCONFIRMED: usize = 1024;

impl<'a> Worker<'a> {
    pub fn new(
        sh: &'a Shared<'a>,
        index: usize,
        feed: Feed,
        quota: Option<u64>,
        rate: (Option<f64>, Option<f64>),
        fsync_every: u64,
    ) -> Worker<'a> {
        Worker {
            sh,
            index,
            feed,
            quota,
            rate_iops: rate.0,
            rate_bytes: rate.1,
            issued: 0,
            issued_bytes: 0,
            fsync_every,
            writes_since_sync: 0,
            last_write_at: 0,
            totals: new_kinds(),
            interval: new_kinds(),
            current: 0,
            last_done_ns: 0,
            error: None,
            unconfirmed: std::collections::VecDeque::new(),
            confirmed: 0,
            syncing: false,
        }
    }

    /// Buffered writes wait for an fsync before their journal entries are confirmed.
    fn confirms_later(&self) -> bool {
        self.sh.buffered && self.sh.journal.is_some()
    }

    /// Before the operations prepared so far are submitted: their journal intents are made durable.
    pub fn before_submit(&mut self) -> io::Result<()> {
        match self.sh.journal {
            Some(j) => j.flush(),
            None => Ok(()),
        }
    }

    fn stopping(&self, now: Instant) -> bool {
        self.sh.cancel.load(Ordering::Relaxed)
            || self.sh.failed.load(Ordering::Relaxed)
            || self.error.is_some()
            || self.quota == Some(0)
            || self.sh.end.is_some_and(|e| now >= e)
    }

    /// The next operation, its write bytes generated into `buf` (at least the largest operation).
    pub fn next(&mut self, now: Instant, buf: &mut [u8]) -> Next {
        if self.stopping(now) {
            return Next::Done;
        }
        // Under a rate cap, operation n is due at n / rate from the start.
        let mut due = None;
        if let Some(r) = self.rate_iops {
            due = Some(self.sh.start + Duration::from_secs_f64(self.issued as f64 / r));
        }
        if let Some(r) = self.rate_bytes {
            let d = self.sh.start + Duration::from_secs_f64(self.issued_bytes as f64 / r);
            due = Some(due.map_or(d, |x: Instant| x.max(d)));
        }
        if let Some(d) = due {
            if d > now {
                return Next::Wait(d);
            }
        }
        let start = due.unwrap_or(now);
        let must_sync = self.confirms_later() && !self.syncing && self.unconfirmed.len() >= MAX_UNCONFIRMED;
        let (kind, offset, len) = if must_sync || (self.fsync_every > 0 && self.writes_since_sync >= self.fsync_every) {
            self.writes_since_sync = 0;
            // The file of the last write (a pool's files are synced one by one).
            (OpKind::Fsync, self.last_write_at, 0)
        } else {
            match &mut self.feed {
                Feed::Sweep { next, end, bs, op } => {
                    if *next >= *end {
                        return Next::Done;
                    }
                    let seg = self.sh.region.segment;
                    let len = (*bs).min(*end - *next).min(seg - *next % seg);
                    let at = *next;
                    *next += len;
                    (*op, at, len)
                }
                Feed::Mix(p) => {
                    let pick = p.draw();
                    (pick.op, pick.offset, pick.len)
                }
            }
        };
        let unit = self.sh.data.unit();
        let mut offset = offset;
        if matches!(kind, OpKind::Write | OpKind::Trim) {
            // Claim the blocks (another write of them may be in flight); draw again a few times.
            let mut tries = 0;
            while !self.sh.map.claim(offset / unit, len / unit) {
                tries += 1;
                match &mut self.feed {
                    Feed::Mix(p) if tries < 64 => offset = p.offset(len, unit),
                    _ => return Next::Wait(now + Duration::from_micros(50)),
                }
            }
            if let Some(j) = self.sh.journal {
                let first = offset / unit;
                j.intent(first, (first..first + len / unit).map(|b| self.sh.map.get(b) & !BUSY));
            }
            if kind == OpKind::Write {
                self.last_write_at = offset;
                let first = offset / unit;
                for (i, block) in buf[..len as usize].chunks_exact_mut(unit as usize).enumerate() {
                    let b = first + i as u64;
                    self.sh.data.fill_block(b, self.sh.map.pending(b), block);
                }
                self.writes_since_sync += 1;
            }
        }
        self.issued += 1;
        self.issued_bytes += len;
        if let Some(q) = &mut self.quota {
            *q -= 1;
        }
        let covers = if kind == OpKind::Fsync {
            self.syncing = true;
            self.confirmed + self.unconfirmed.len() as u64
        } else {
            0
        };
        Next::Op(Op { kind, offset, len, start, covers })
    }

    /// A failure outside an operation (the journal could not be made durable): the job stops.
    pub fn fail(&mut self, e: io::Error) {
        if self.error.is_none() {
            let what = self
                .sh
                .journal
                .map_or("the journal".to_string(), |_| format!("the journal of {}", self.sh.region.name));
            self.error = Some(Error::io(what, e));
            self.sh.failed.store(true, Ordering::Relaxed);
        }
    }

    /// Records a completion at `now`: `Ok(n)` bytes done.
    pub fn complete(&mut self, op: Op, result: io::Result<usize>, now: Instant) {
        let unit = self.sh.data.unit();
        let blocks = (op.offset / unit, op.len / unit);
        let result = match result {
            // A special file with nothing to sync (null://'s /dev/zero).
            Err(e) if op.kind == OpKind::Fsync && e.raw_os_error() == Some(libc::EINVAL) => Ok(0),
            Ok(n) if (n as u64) < op.len && op.kind != OpKind::Fsync => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("a {} of {} bytes did {n}", op.kind.name(), op.len),
            )),
            r => r,
        };
        match (&result, op.kind) {
            (Ok(_), OpKind::Write) if self.confirms_later() => self.unconfirmed.push_back(blocks),
            (Ok(_), OpKind::Write) => self.release(blocks, Release::Written),
            // A trimmed block holds zeros or anything: not known; a failed write, not known either.
            (_, OpKind::Write | OpKind::Trim) => self.release(blocks, Release::Unknown),
            (Ok(_), OpKind::Fsync) => {
                self.syncing = false;
                while self.confirmed < op.covers {
                    let Some(b) = self.unconfirmed.pop_front() else { break };
                    self.release(b, Release::Written);
                    self.confirmed += 1;
                }
            }
            (Err(_), OpKind::Fsync) => self.syncing = false,
            _ => {}
        }
        if let Err(e) = result {
            if self.error.is_none() {
                let (file, at) = self.sh.region.place(op.offset);
                let what =
                    format!("{} of {} bytes at offset {at} of {}", op.kind.name(), op.len, self.sh.region.names[file]);
                self.error = Some(Error::io(what, e));
                self.sh.failed.store(true, Ordering::Relaxed);
            }
            return;
        }
        let done_ns = now.saturating_duration_since(self.sh.start).as_nanos() as u64;
        let ns = now.saturating_duration_since(op.start).as_nanos() as u64;
        let interval = done_ns / self.sh.interval_ns;
        if interval != self.current {
            self.hand_over(interval);
        }
        let k = op.kind.index();
        self.interval[k].record(op.len, ns);
        if done_ns >= self.sh.ramp_ns {
            self.totals[k].record(op.len, ns);
        }
        self.last_done_ns = self.last_done_ns.max(done_ns);
    }

    fn hand_over(&mut self, next: u64) {
        if let Ok(mut s) = self.sh.series.lock() {
            s.hand_over(self.index, self.current, &self.interval, next);
        }
        for k in self.interval.iter_mut() {
            k.reset();
        }
        self.current = next;
    }

    /// Which file byte `at` of the region is in, and where in it.
    pub fn place(&self, at: u64) -> (usize, u64) {
        self.sh.region.place(at)
    }

    /// Ends claims of blocks `(first, n)`, in the map and the journal.
    fn release(&self, (first, n): (u64, u64), how: Release) {
        self.sh.map.release(first, n, how);
        if let Some(j) = self.sh.journal {
            for b in first..first + n {
                j.confirm(b, self.sh.map.get(b));
            }
        }
    }

    /// Hands over its last interval: the series can close. Buffered writes still waiting for an
    /// fsync get one now.
    pub fn finish(&mut self) {
        if !self.unconfirmed.is_empty() {
            let synced = self.sh.region.sync_all();
            let how = if synced.is_ok() { Release::Written } else { Release::Unknown };
            while let Some(b) = self.unconfirmed.pop_front() {
                self.release(b, how);
            }
            if let Err(e) = synced {
                self.error.get_or_insert(e);
            }
        }
        if let Ok(mut s) = self.sh.series.lock() {
            s.finish(self.index, self.current, &self.interval, self.last_done_ns);
        }
    }
}
