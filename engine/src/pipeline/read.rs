//! Reads: whole objects or byte ranges, many in flight, each checked as it arrives.
//!
//! A read is cut into pieces at multiples of the pool's buffer size. A fixed set of reader threads
//! (the read depth) takes pieces from the reads in the order they were issued, so the ranges of one
//! big object are read in parallel — as a transfer manager downloads — and many small objects are
//! read at once. Each piece lands in a pool buffer (the memory bound writes share) and is checked
//! right there, on the thread that read it, while the other threads' reads are in flight:
//!
//! - `None`: nothing; the bytes are counted and dropped.
//! - `Crc`: CRC32C of what was read, pieces combined in order, against what the object should hold
//!   (the CRC its write recorded, or one computed from its recipe).
//! - `Verify`: every byte against the recipe, regenerated from the seed into a per-thread scratch.
//!
//! Where and how a read differs goes to the user's report; a plugin is only told whether it passed
//! (nothing read from storage flows back into the sandbox). A read never writes.
//!
//! When a stonewall goes up (another rank finished the phase first), no new piece starts: the pieces
//! in flight complete, and every read not done ends as [`Outcome::Cut`] with the bytes it had.

use crate::error::{Error, Result};
use crate::generator::Generator;
use crate::object::Content;
use crate::pipeline::phase::TimeSplit;
use crate::pipeline::verify::Verdict;
use crate::pool::BufferPool;
use crate::sink::{ObjectReader, Sink};
use crc_fast::CrcAlgorithm::Crc32Iscsi;
use crossbeam_channel::Sender;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a read checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    None,
    Crc,
    Verify,
}

impl std::str::FromStr for Check {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Check, String> {
        match s {
            "none" => Ok(Check::None),
            "crc" => Ok(Check::Crc),
            "verify" => Ok(Check::Verify),
            other => Err(format!("unknown check '{other}' (use none, crc or verify)")),
        }
    }
}

/// What the object should hold, when the run knows it (written or declared in this run).
#[derive(Clone)]
pub struct Expected {
    pub content: Content,
    pub size: u64,
    /// CRC32C of the whole object, when its write recorded it.
    pub crc32c: Option<u32>,
}

/// Which objects a read may open: the plugin host reads only what the engine wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Require {
    /// Written in this run: no identity needed (a store without identities holds them too).
    Written,
    /// One carrying exactly this identity (a declared object).
    Exactly(crate::object::identity::Identity),
    /// One carrying any identity (the engine wrote it).
    Any,
}

/// One read.
pub struct ReadReq {
    pub name: String,
    /// What the object must be to be read at all; anything else is "not found".
    pub require: Require,
    pub offset: u64,
    /// Bytes to read; `None` to the end of the object.
    pub len: Option<u64>,
    pub check: Check,
    pub expected: Option<Expected>,
    /// The caller's tag (the phase it belongs to).
    pub tag: usize,
    /// The caller's sequence number.
    pub seq: u64,
}

/// How a read ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Read in full; its check (if any) passed.
    Passed,
    /// Read, but not what it should be: the first difference, for the user.
    Failed(Verdict),
    /// Could not be read (missing, refused, the range beyond its end, the connection lost).
    Error(Error),
    /// The stonewall ended its phase first: `bytes` were read (and checked, for `Verify`).
    Cut,
}

/// A finished read.
#[derive(Clone, Debug)]
pub struct ReadResult {
    pub name: String,
    pub offset: u64,
    pub bytes: u64,
    /// From the moment a reader thread took it up (opening it included) to its last byte checked:
    /// the service time, without the time it queued behind earlier reads.
    pub latency: Duration,
    /// From the same moment to its first piece (one buffer) in memory.
    pub ttfb: Duration,
    pub at: Instant,
    pub check: Check,
    /// CRC32C of what was read (a `Crc` read), for the user's report.
    pub crc32c: Option<u32>,
    pub outcome: Outcome,
    pub tag: usize,
    pub seq: u64,
    /// When this read opened its object (the first read of it since [`Reads::new_phase`]): the share
    /// the local cache held then, and the object's size.
    pub cached: Option<(f64, u64)>,
}

/// A read in progress.
struct Active {
    req: ReadReq,
    /// When a reader thread first took it up.
    started: OnceLock<Instant>,
    reader: OnceLock<std::result::Result<Arc<dyn ObjectReader>, Error>>,
    /// Set when this read was the one that opened the object: (cached share, size).
    opened: OnceLock<(f64, u64)>,
    state: Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    /// Where the next piece starts, and where the read ends (known once open).
    next: u64,
    end: Option<u64>,
    /// Pieces handed out and not yet done.
    out: usize,
    claimed_all: bool,
    bytes: u64,
    ttfb: Option<Duration>,
    /// A `crc` read's CRCs so far.
    crcs: Crcs,
    failed: Option<Verdict>,
    error: Option<Error>,
    /// The stonewall stopped it.
    cut: bool,
}

/// The CRC32Cs of a read's bytes, combined in offset order as its pieces finish, so what is kept
/// does not grow with the read's length: only pieces done ahead of the first one still missing wait.
#[derive(Default)]
struct Crcs {
    /// The bytes up to here are combined.
    at: u64,
    /// CRC of what was read (none yet: empty), and of what it should be.
    got: Option<u32>,
    want: Option<u32>,
    /// A piece had no expected CRC (nothing known to compare with).
    want_unknown: bool,
    /// Pieces finished ahead of `at`: start → (length, CRC read, CRC expected).
    early: BTreeMap<u64, (u64, u32, Option<u32>)>,
}

impl Crcs {
    fn add(&mut self, start: u64, len: u64, got: u32, want: Option<u32>) {
        self.early.insert(start, (len, got, want));
        while let Some((len, got, want)) = self.early.remove(&self.at) {
            self.got = Some(combine(self.got, got, len));
            match want {
                Some(w) => self.want = Some(combine(self.want, w, len)),
                None => self.want_unknown = true,
            }
            self.at += len;
        }
    }
}

struct Shared {
    queue: Mutex<VecDeque<Arc<Active>>>,
    wake: Condvar,
    closed: AtomicBool,
    sink: Arc<dyn Sink>,
    /// The sink keeps identities.
    identities: bool,
    pool: BufferPool,
    gen: Arc<Generator>,
    align: usize,
    done: Sender<ReadResult>,
    cancel: Arc<AtomicBool>,
    split: Arc<TimeSplit>,
    /// Objects open for reading in this phase: each is opened (and its cache dropped) once per
    /// phase, not once per range.
    open: Mutex<HashMap<String, Arc<dyn ObjectReader>>>,
    /// Up when another rank finished the phase first (stonewalling; unset without it).
    wall: OnceLock<Arc<crate::world::Wall>>,
}

/// What one read costs its caller while it is held, bytes, beyond twice its name: its request and
/// progress record (queued or in flight, behind an `Arc` and a mutex), its result waiting in the
/// channel and then in the caller's list (which grows by doubling), and the allocator's share of
/// each. Measured against peak RSS with a flood of reads never waited for.
pub fn held_per_read() -> usize {
    std::mem::size_of::<Active>() + 3 * std::mem::size_of::<ReadResult>() + 256
}

/// Objects kept open at once (each holds a file descriptor); past it the set starts over.
pub const MAX_OPEN: usize = 256;

/// The reader threads of a run. Dropping it stops them once the reads issued have finished.
pub struct Reads {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Reads {
    /// Starts `depth` reader threads over `sink`, reading into `pool`'s buffers; finished reads are
    /// sent to `done`.
    pub fn start(
        sink: Arc<dyn Sink>,
        pool: BufferPool,
        gen: Arc<Generator>,
        depth: usize,
        done: Sender<ReadResult>,
        cancel: Arc<AtomicBool>,
        split: Arc<TimeSplit>,
    ) -> Result<Reads> {
        let align = sink.capabilities().alignment.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            closed: AtomicBool::new(false),
            identities: sink.keeps_identity(),
            sink,
            pool,
            gen,
            align,
            done,
            cancel,
            split,
            open: Mutex::new(HashMap::new()),
            wall: OnceLock::new(),
        });
        let mut threads = Vec::new();
        for i in 0..depth.clamp(1, 256) {
            let shared = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("dgen-read-{i}"))
                .spawn(move || worker(&shared))
                .map_err(|e| Error::Resource(format!("cannot start reader threads: {e}")))?;
            threads.push(t);
        }
        Ok(Reads { shared, threads })
    }

    /// Stops each phase's reads when `wall` goes up (stonewalling across ranks).
    pub fn set_wall(&self, wall: Arc<crate::world::Wall>) {
        let _ = self.shared.wall.set(wall);
    }

    /// A new phase starts: objects are opened afresh (and their cached pages dropped again).
    pub fn new_phase(&self) {
        self.shared.open.lock().unwrap().clear();
    }

    /// Queues a read; returns at once.
    pub fn submit(&self, req: ReadReq) {
        let a = Arc::new(Active {
            state: Mutex::new(Progress {
                next: req.offset,
                crcs: Crcs { at: req.offset, ..Default::default() },
                ..Default::default()
            }),
            req,
            started: OnceLock::new(),
            reader: OnceLock::new(),
            opened: OnceLock::new(),
        });
        self.shared.queue.lock().unwrap().push_back(a);
        self.shared.wake.notify_all();
    }
}

impl Drop for Reads {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A piece claimed by a worker: bytes `[start, end)` of a read.
struct Piece {
    read: Arc<Active>,
    start: u64,
    end: u64,
}

fn worker(sh: &Shared) {
    let mut scratch: Vec<u8> = Vec::new();
    while let Some(piece) = claim(sh) {
        sh.split.read_started();
        let result = if sh.cancel.load(Ordering::Relaxed) {
            Err(Error::Cancelled)
        } else if piece.start == piece.end && piece.read.state.lock().unwrap().cut {
            // What the stonewall left of a read: nothing to read.
            Ok(PieceResult { crc: 0, want_crc: None, differs: None, arrived: Duration::ZERO })
        } else {
            read_piece(sh, &piece, &mut scratch)
        };
        finish_piece(sh, piece, result);
        sh.split.read_done();
    }
}

/// Waits for the next piece to read; `None` once closed and nothing is left, or at Ctrl-C.
fn claim(sh: &Shared) -> Option<Piece> {
    let mut q = sh.queue.lock().unwrap();
    loop {
        // Ctrl-C: what is queued is not read, nor reported (a flood of reads ends at once).
        if sh.cancel.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(front) = q.front().cloned() {
            // Opening can take a round trip (a HEAD): do it without holding the queue, once.
            drop(q);
            let walled = sh.wall.get().is_some_and(|w| w.up());
            if !walled {
                front.started.get_or_init(Instant::now);
            }
            let opened = (!walled).then(|| front.reader.get_or_init(|| open(sh, &front)));
            let mut p = front.state.lock().unwrap();
            q = sh.queue.lock().unwrap();
            if p.claimed_all {
                // Another worker took the last piece while we opened; it is off the queue already.
                continue;
            }
            let Some(opened) = opened else {
                // The stonewall ended the phase: the rest of this read is not read. One empty piece
                // carries it to its end (and its report) like any other.
                p.cut = true;
                p.end = Some(p.next);
                p.claimed_all = true;
                if q.front().is_some_and(|f| Arc::ptr_eq(f, &front)) {
                    q.pop_front();
                }
                p.out += 1;
                let at = p.next;
                drop(p);
                drop(q);
                return Some(Piece { read: front, start: at, end: at });
            };
            let end = match (opened, p.end) {
                (_, Some(end)) => end,
                (Err(e), None) => {
                    p.error.get_or_insert(e.clone());
                    p.end = Some(p.next);
                    p.next
                }
                (Ok(reader), None) => {
                    let end = match read_end(&front.req, reader.size()) {
                        Ok(end) => end,
                        Err(e) => {
                            p.error = Some(e);
                            p.next
                        }
                    };
                    p.end = Some(end);
                    end
                }
            };
            let chunk = sh.pool.buffer_size() as u64;
            let start = p.next;
            // The next buffer boundary; none past the top of the offsets (nothing can be read there).
            let boundary = (start / chunk).checked_add(1).and_then(|n| n.checked_mul(chunk)).unwrap_or(u64::MAX);
            let stop = end.min(boundary).max(start);
            p.next = stop;
            if stop >= end {
                p.claimed_all = true;
                if q.front().is_some_and(|f| Arc::ptr_eq(f, &front)) {
                    q.pop_front();
                }
            }
            p.out += 1;
            drop(p);
            drop(q);
            return Some(Piece { read: front, start, end: stop });
        }
        if sh.closed.load(Ordering::Relaxed) {
            return None;
        }
        q = sh.wake.wait_timeout(q, Duration::from_millis(100)).unwrap().0;
    }
}

fn open(sh: &Shared, read: &Active) -> std::result::Result<Arc<dyn ObjectReader>, Error> {
    let name = &read.req.name;
    if let Some(r) = sh.open.lock().unwrap().get(name) {
        allowed(sh, &read.req, r.as_ref())?;
        return Ok(r.clone());
    }
    let r: Arc<dyn ObjectReader> = Arc::from(sh.sink.open(name)?);
    // Before anything of it is looked at (its size included).
    allowed(sh, &read.req, r.as_ref())?;
    if let Some(share) = r.cached_fraction() {
        let _ = read.opened.set((share, r.size()));
    }
    let mut open = sh.open.lock().unwrap();
    if open.len() >= MAX_OPEN {
        open.clear();
    }
    open.insert(name.clone(), r.clone());
    Ok(r)
}

/// Whether `req` may read the object `r` opened: what its identity says (see [`Require`]).
fn allowed(sh: &Shared, req: &ReadReq, r: &dyn ObjectReader) -> Result<()> {
    let ok = match req.require {
        Require::Written => true,
        _ if !sh.identities => false,
        Require::Exactly(id) => r.identity() == Some(id),
        Require::Any => r.identity().is_some(),
    };
    if ok {
        return Ok(());
    }
    let why = match (req.require, sh.identities) {
        (_, false) => "was not written in this run, and this store keeps no identities: not read",
        (Require::Exactly(_), true) if r.identity().is_some() => {
            "is not what was declared (another identity): not read"
        }
        _ => "carries no dgen-engine identity (the engine did not write it): not read",
    };
    Err(Error::storage(crate::error::Failure::NotFound, &req.name, why, None))
}

/// Where a read ends, given the object's size on storage; or why it cannot start.
fn read_end(req: &ReadReq, size: u64) -> Result<u64> {
    if let Some(x) = req.expected.as_ref().filter(|x| x.size != size) {
        // Shorter or longer than what was written: whatever the check, the object is not the one
        // the run knows (truncated, replaced).
        let how = if size < x.size { "shorter than" } else { "longer than" };
        return Err(Error::sink(&req.name, format!("is {size} bytes on storage, {how} the {} bytes written", x.size)));
    }
    let end = match req.len {
        None => size.max(req.offset),
        Some(len) => req.offset.saturating_add(len),
    };
    if end > size || req.offset > size {
        let from = req.offset.min(end);
        return Err(Error::sink(
            &req.name,
            format!("cannot read bytes {from}..{end}: the object is {size} bytes long"),
        ));
    }
    Ok(end)
}

/// What one piece found: its CRC (and the expected one), or the first difference.
struct PieceResult {
    crc: u32,
    want_crc: Option<u32>,
    differs: Option<Verdict>,
    arrived: Duration,
}

fn read_piece(sh: &Shared, piece: &Piece, scratch: &mut Vec<u8>) -> Result<PieceResult> {
    let read = &piece.read;
    let reader = match read.reader.get() {
        Some(Ok(r)) => r.clone(),
        Some(Err(e)) => return Err(e.clone()),
        None => return Err(Error::sink(&read.req.name, "read before open")),
    };
    // O_DIRECT: read the aligned window around the piece (it lies within one buffer-sized window,
    // which is itself aligned), then look at the piece's part of it.
    let a = sh.align as u64;
    let win_start = piece.start / a * a;
    let win_end = piece.end.div_ceil(a) * a;
    let want = (piece.end - win_start) as usize;
    let waited = Instant::now();
    let mut buf = sh.pool.take();
    let calls = Instant::now();
    sh.split.read_waited(calls - waited);
    let win = &mut buf.as_mut_slice()[..(win_end - win_start) as usize];
    let filled = fill_window(reader.as_ref(), win, win_start, want, piece.end, &read.req.name);
    let checking = Instant::now();
    // Read-call time, whether the calls succeeded or not.
    sh.split.read_io(checking - calls);
    filled?;
    let arrived = read.started.get().map_or(Duration::ZERO, |t| t.elapsed());
    let got = &win[(piece.start - win_start) as usize..want];
    let check = read.req.check;
    let expected = read.req.expected.as_ref().filter(|_| check != Check::None);
    // With the whole object's CRC known, a whole read needs no regenerated bytes.
    let regenerate =
        expected.filter(|x| !(check == Check::Crc && x.crc32c.is_some() && covers_whole(&read.req, x.size)));
    let mut out = PieceResult { crc: 0, want_crc: None, differs: None, arrived };
    if check == Check::None {
        return Ok(out);
    }
    // One pass per cache-sized tile: the CRC of what was read, and the expected bytes regenerated
    // into a scratch that stays in cache, compared (or CRCed) while the tile is still there.
    let mut digest = crc_fast::Digest::new(Crc32Iscsi);
    let mut want_digest = crc_fast::Digest::new(Crc32Iscsi);
    scratch.resize(TILE.min(got.len()), 0);
    for (i, tile) in got.chunks(TILE).enumerate() {
        // A verify compares every byte; the CRC is only what a `crc` read checks (it cost a verify
        // read a tenth of its CPU time).
        if check == Check::Crc {
            digest.update(tile);
        }
        let Some(x) = regenerate else { continue };
        let at = piece.start + (i * TILE) as u64;
        let want = &mut scratch[..tile.len()];
        x.content.fill(&sh.gen, at, want);
        if check == Check::Crc {
            want_digest.update(want);
        } else if out.differs.is_none() && tile != &want[..] {
            let j = tile.iter().zip(want.iter()).position(|(g, w)| g != w).expect("tiles differ");
            out.differs = Some(Verdict::Differs { offset: at + j as u64, expected: want[j], found: tile[j] });
        }
    }
    if check == Check::Crc {
        out.crc = digest.finalize() as u32;
        if regenerate.is_some() {
            out.want_crc = Some(want_digest.finalize() as u32);
        }
    }
    sh.split.checked(checking.elapsed());
    Ok(out)
}

/// Reads `want` bytes of the window starting at `win_start` into `win`; an object that ends first
/// (before `piece_end`) is an error naming it.
fn fill_window(
    reader: &dyn ObjectReader,
    win: &mut [u8],
    win_start: u64,
    want: usize,
    piece_end: u64,
    name: &str,
) -> Result<()> {
    let mut filled = 0usize;
    while filled < want {
        let n = reader.read_at(win_start + filled as u64, &mut win[filled..])?;
        if n == 0 {
            return Err(Error::sink(
                name,
                format!(
                    "ended at byte {} while reading up to {piece_end}: shorter than it said",
                    win_start + filled as u64
                ),
            ));
        }
        filled += n;
    }
    Ok(())
}

/// Bytes checked at a time: regenerated into a scratch that stays in the core's cache.
const TILE: usize = 128 << 10;

fn covers_whole(req: &ReadReq, size: u64) -> bool {
    req.offset == 0 && req.len.is_none_or(|l| l == size)
}

fn finish_piece(sh: &Shared, piece: Piece, result: Result<PieceResult>) {
    let read = piece.read;
    let mut p = read.state.lock().unwrap();
    p.out -= 1;
    match result {
        Ok(r) => {
            p.bytes += piece.end - piece.start;
            p.ttfb = Some(p.ttfb.map_or(r.arrived, |t| t.min(r.arrived)));
            if read.req.check == Check::Crc && p.error.is_none() && piece.end > piece.start {
                p.crcs.add(piece.start, piece.end - piece.start, r.crc, r.want_crc);
            }
            if let Some(Verdict::Differs { offset, .. }) = &r.differs {
                let earlier = match &p.failed {
                    Some(Verdict::Differs { offset: o, .. }) => offset < o,
                    _ => true,
                };
                if earlier {
                    p.failed = r.differs;
                }
            }
        }
        Err(e) => {
            p.error.get_or_insert(e);
            // The CRC will not be used: keep nothing more for it.
            p.crcs.early.clear();
        }
    }
    if !(p.claimed_all && p.out == 0) {
        return;
    }
    let req = &read.req;
    let crc =
        (req.check == Check::Crc && p.error.is_none() && p.failed.is_none() && !p.cut).then(|| p.crcs.got.unwrap_or(0));
    if let Some(got) = crc {
        let want = match req.expected.as_ref().and_then(|x| x.crc32c.filter(|_| covers_whole(req, x.size))) {
            Some(whole) => Some(whole),
            None if p.crcs.want_unknown => None,
            None => Some(p.crcs.want.unwrap_or(0)),
        };
        if let Some(want) = want {
            if want != got {
                p.failed = Some(Verdict::CrcMismatch { expected: want, found: got });
            }
        }
    }
    let outcome = if let Some(e) = p.error.take() {
        Outcome::Error(e)
    } else if let Some(v) = p.failed.take() {
        Outcome::Failed(v)
    } else if p.cut {
        Outcome::Cut
    } else {
        Outcome::Passed
    };
    let latency = read.started.get().map_or(Duration::ZERO, |t| t.elapsed());
    let result = ReadResult {
        name: req.name.clone(),
        offset: req.offset,
        bytes: p.bytes,
        latency,
        ttfb: p.ttfb.unwrap_or(latency),
        at: Instant::now(),
        check: req.check,
        crc32c: crc,
        outcome,
        tag: req.tag,
        seq: req.seq,
        cached: read.opened.get().copied(),
    };
    drop(p);
    let _ = sh.done.send(result);
}

/// CRC32C of `a ‖ b` from the CRC of `a` (none: empty) and the CRC of `b`, `len_b` bytes.
fn combine(a: Option<u32>, b: u32, len_b: u64) -> u32 {
    match a {
        None => b,
        Some(a) => crc_fast::checksum_combine(Crc32Iscsi, a as u64, b as u64, len_b) as u32,
    }
}
