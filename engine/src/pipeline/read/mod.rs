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

mod worker;

use worker::{combine, worker};

use crate::error::{Error, Result};
use crate::generator::Generator;
use crate::object::Content;
use crate::pipeline::phase::TimeSplit;
use crate::pipeline::verify::Verdict;
use crate::pool::BufferPool;
use crate::sink::{ObjectReader, Sink};
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
                .map_err(|e| Error::resource_from("cannot start reader threads", e))?;
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
