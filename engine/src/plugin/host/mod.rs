//! The host side of the contract: what `open`, `write`, `fill`, `commit`, `wait-all`, `verify`… do.
//!
//! A target is a [`Recipe`] under construction. Plugin bytes become `Bytes` segments; `fill` becomes a
//! `Fill` segment that points into the run's data stream (one stream per data profile, so the dedup
//! domain is the whole run; a run of consecutive fills on one target is one segment, starting on a
//! dedup-unit boundary); fields and reserved regions are zero placeholders resolved at `commit`. A
//! committed recipe goes to the executor as a job and `commit` returns at once; `wait-all` waits for
//! the executor's finished-object reports. In verify mode a commit reads the object back and compares
//! it instead of writing.
//!
//! The plugin is a stranger's code, so the host treats every call as hostile:
//! - Everything held on its behalf (open targets and their layouts, plugin-made bytes, committed-object
//!   records, metrics, verdicts) is charged to a [`Budget`] it shares with the plugin's linear memory
//!   and tables: `[limits] memory` bounds the sum. The charge for an object is O(1) in its size and in
//!   the number of calls that built it, except for what the plugin really adds (bytes, segments
//!   between its writes), which is charged as it is added.
//! - Bytes and strings are looked at in the plugin's memory before anything is copied, so an
//!   oversized argument is refused without the host ever holding it.
//! - Nothing read from storage flows back: a read-back tells the plugin identical or not and the byte
//!   count; the first differing offset and the bytes found go to the user's report only.
//! - Misuse a well-behaved plugin never commits (a name outside the target root, a quota breach)
//!   traps: the message is kept in [`HostState::violation`] and the run fails naming the plugin.
mod budget;
mod calls;
mod commit;
mod draft;
mod fills;
mod guarded;
mod jobs;
mod logs;
mod names;
mod readback;
mod reads;
mod stretches;
mod written;

pub use budget::Budget;
pub use draft::Draft;
pub(crate) use guarded::add_guarded_calls;
pub use logs::{LOG_BURST, LOG_RATE, MAX_LOG_LINE, MAX_METRIC_NAME};
pub(crate) use names::no_such;
pub use stretches::{MAX_PAUSE, MAX_PHASES};
pub use written::last_finish;

use super::Limits;
use crate::error::Error;
use crate::events::Events;
use crate::generator::{Generator, Profile};
use crate::pipeline::executor::{ObjectJob, ObjectResult};
use crate::pipeline::phase::Phase;
use crate::pipeline::read::{ReadResult, Reads};
use crate::pipeline::verify::Verdict;
use crate::pool::BufferPool;
use crate::sink::{Capabilities, Sink};
use crossbeam_channel::{Receiver, Sender};
use logs::LogGate;
use names::Named;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;

/// The run's data streams: offsets stay below this, so no sum of an offset and a length overflows.
pub const MAX_STREAM: u64 = 1 << 62;

/// Whether commits write or verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Write,
    Verify,
}

/// What the host shares with the rest of the run.
pub struct HostContext {
    pub plugin: String,
    pub params_json: String,
    pub seed: u64,
    pub profile: Profile,
    pub mode: Mode,
    pub sink: Arc<dyn Sink>,
    /// Buffers for read-back comparisons.
    pub pool: BufferPool,
    /// Buffers the plugin's reads use (the executor's, in a write run: one memory bound).
    pub read_pool: BufferPool,
    /// Reader threads: reads (pieces of them) in flight at once.
    pub read_depth: usize,
    /// Where committed objects go (write mode); `None` once the run is over.
    pub jobs: Option<Sender<ObjectJob>>,
    /// Finished objects, from the executor.
    pub done: Receiver<ObjectResult>,
    pub cancel: Arc<AtomicBool>,
    pub quiet: bool,
    /// Where log lines and notes go (the caller prints them).
    pub events: Arc<dyn Events>,
    /// The run's clock: `totals()` measures from here, as the report does.
    pub started: Instant,
    /// The run's time counters (the executor's, in a write run), which phases take their split from.
    pub split: Arc<crate::pipeline::phase::TimeSplit>,
    /// This process's rank among the run's (each rank's data is its own lane of the run's streams),
    /// and the barrier phases start at.
    pub world: Arc<crate::world::World>,
    /// Stonewalling: a phase ends for every rank when the first one finishes it (the workload's
    /// `stonewall`; only among ranks running at once).
    pub stonewall: bool,
    /// What `facts` tells the plugin, but for the current phase's page-cache share.
    pub facts: HostFacts,
}

/// The node and target facts a plugin may ask for (`facts`): sizes and settings, nothing of
/// storage's content.
#[derive(Clone, Debug, Default)]
pub struct HostFacts {
    pub node_memory: u64,
    pub node_ranks: u32,
    pub page_cache: bool,
    pub cache_drop: bool,
    pub results_elsewhere: Option<bool>,
}

/// The store's data: everything the host functions touch.
pub struct HostState {
    table: ResourceTable,
    pub(crate) budget: Budget,
    pub(crate) limits: Limits,
    caps: Capabilities,
    pub(crate) panic_message: Option<String>,
    pub(crate) violation: Option<String>,
    /// When the plugin started; its own running time is the time since, less `blocked`.
    pub(crate) clock: Instant,
    /// Wall time spent blocked waiting for storage (`wait-all`, read-backs): not held against the
    /// deadline. Host work done for the plugin (resolving fields) is not in it.
    pub(crate) blocked: Duration,
    pub(crate) deadline_hit: bool,
    /// Ctrl-C stopped the plugin.
    pub(crate) interrupted: bool,
    ctx: HostContext,
    /// One generator and stream cursor per data profile used.
    gens: Vec<(Profile, Arc<Generator>, u64)>,
    open_targets: usize,
    plugin_bytes: u64,
    committed: u64,
    /// Every name opened or committed in this run: a name is written once.
    names: HashMap<String, Named>,
    /// Finished objects not yet returned by `wait-all`.
    unreported: Vec<ObjectResult>,
    finished: Vec<ObjectResult>,
    metrics: Vec<(String, f64)>,
    /// Each read-back's verdict, in order (every commit in verify mode; `verify` calls in write mode).
    verdicts: Vec<(String, Verdict)>,
    /// The executor stopped (an error or Ctrl-C): nothing more will finish.
    writes_stopped: bool,
    /// Committed objects the stonewall cut (they are not in `finished`).
    cut: u64,
    /// Meeting points of all ranks passed so far (phase starts, barriers, world totals): the
    /// current stretch's number, the same on every rank, for stonewalling.
    pub(crate) stretch_seq: u64,
    /// Objects committed and reads issued when the current stretch began.
    stretch_mark: (u64, u64),
    /// The run's phases, in order; the last is current.
    phases: Vec<Phase>,
    /// What one phase's records cost the budget.
    phase_cost: usize,
    reads: Option<Reads>,
    read_tx: Sender<ReadResult>,
    read_rx: Receiver<ReadResult>,
    /// Reads issued, and those of them reported back so far.
    reads_issued: u64,
    reads_received: u64,
    /// Finished reads not yet returned by `wait-reads`, with their charge.
    reads_unreported: Vec<(ReadResult, usize)>,
    /// Reads whose check failed: what and where, for the user (the first ones; all are counted).
    read_failures: Vec<(String, u64, Verdict)>,
    read_failure_count: u64,
    /// The first read (or stat, list, delete) that could not be done: the run's error.
    read_error: Option<Error>,
    started: Instant,
    /// When the progress line was last told how reads go.
    read_told: Instant,
    logs: LogGate,
    /// Scratch for resolving fields, kept across commits.
    scratch: Vec<u8>,
    /// `verify` calls a sink that keeps nothing could not answer (not done, not mismatches).
    unverifiable: u64,
    /// Regions of the operations engine opened in this run, by object name.
    regions: HashMap<String, jobs::RegionState>,
    /// The first job that could not be done, or was malformed.
    job_error: Option<Error>,
}

type HostResult<T> = wasmtime::Result<Result<T, String>>;

impl HostState {
    pub fn new(ctx: HostContext, limits: Limits) -> HostState {
        let gen = Arc::new(
            Generator::new(ctx.seed, ctx.profile.clone()).for_rank(ctx.world.rank().into(), ctx.world.size().into()),
        );
        let caps = ctx.sink.capabilities();
        let started = ctx.started;
        let first = Phase::new("run".into(), started).with_split(ctx.split.snapshot());
        let (read_tx, read_rx) = crossbeam_channel::unbounded();
        HostState {
            table: ResourceTable::new(),
            budget: Budget::new(limits.memory),
            limits,
            caps,
            panic_message: None,
            violation: None,
            clock: Instant::now(),
            blocked: Duration::ZERO,
            deadline_hit: false,
            interrupted: false,
            gens: vec![(ctx.profile.clone(), gen, 0)],
            ctx,
            open_targets: 0,
            plugin_bytes: 0,
            committed: 0,
            names: HashMap::new(),
            unreported: Vec::new(),
            finished: Vec::new(),
            metrics: Vec::new(),
            verdicts: Vec::new(),
            writes_stopped: false,
            cut: 0,
            stretch_seq: 0,
            stretch_mark: (0, 0),
            phases: vec![first],
            phase_cost: stretches::phase_cost(),
            reads: None,
            read_tx,
            read_rx,
            reads_issued: 0,
            reads_received: 0,
            reads_unreported: Vec::new(),
            read_failures: Vec::new(),
            read_failure_count: 0,
            read_error: None,
            started,
            read_told: started,
            logs: LogGate::new(),
            scratch: Vec::new(),
            unverifiable: 0,
            regions: HashMap::new(),
            job_error: None,
        }
    }

    /// Ctrl-C was pressed.
    pub(crate) fn cancelled(&self) -> bool {
        self.ctx.cancel.load(Ordering::Relaxed)
    }

    /// The plugin's own running time so far.
    pub(crate) fn own_time(&self) -> Duration {
        self.clock.elapsed().saturating_sub(self.blocked)
    }

    /// A storage error as the plugin may hear it: paths relative to the target root (the plugin is
    /// not told where on this machine its root is), and "no such object" for anything not found.
    pub(crate) fn tell(&self, name: &str, e: &Error) -> String {
        if matches!(e, Error::NotFound { .. }) {
            return no_such(name);
        }
        let text = e.to_string();
        let describe = self.ctx.sink.describe();
        match describe.strip_prefix("file:") {
            Some(root) if !root.is_empty() => text.replace(&format!("{root}/"), "").replace(root, "."),
            _ => text,
        }
    }

    /// Traps the plugin with `message` (kept for the error report).
    fn violate(&mut self, message: String) -> wasmtime::Error {
        self.violation.get_or_insert(message.clone());
        wasmtime::Error::new(HostTrap::Violation(message))
    }

    fn interrupted_trap(&mut self) -> wasmtime::Error {
        self.interrupted = true;
        wasmtime::Error::new(HostTrap::Interrupted)
    }

    /// The plugin has returned: no more reads will be issued, no more objects committed. Reads in
    /// flight are taken in; the executor's intake closes, so it drains and ends.
    pub fn end_intake(&mut self) {
        self.finish_reads();
        self.close_jobs();
    }

    /// What the run keeps of the host once the plugin and the executor are done: the objects
    /// finished (those reported after the plugin's last wait included), the phases (the last one
    /// ended now), metrics, verdicts, failed reads, the first storage error of a read, and what the
    /// log gate held back.
    pub fn into_outcome(mut self) -> HostOutcome {
        self.collect_finished();
        self.stretch_done();
        self.close_phases();
        HostOutcome {
            log_summary: self.log_summary(),
            finished: self.finished,
            metrics: self.metrics,
            verdicts: self.verdicts,
            phases: self.phases,
            read_failures: self.read_failures,
            read_failure_count: self.read_failure_count,
            error: self.read_error.or(self.job_error),
            unverifiable: self.unverifiable,
        }
    }
}

/// A trap the host raised itself, told apart from the plugin's own faults by its type.
#[derive(Debug, thiserror::Error)]
pub enum HostTrap {
    /// Misuse a well-behaved plugin never commits (a name outside the root, a quota breach).
    #[error("{0}")]
    Violation(String),
    /// Its memory (linear memory, tables, what the host holds for it) would pass `[limits] memory`.
    #[error("{0}")]
    Memory(String),
    /// Its own running time passed `[limits] deadline` during host work done for it.
    #[error("deadline")]
    Deadline,
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
}

/// What a run keeps of its plugin host (see [`HostState::into_outcome`]).
pub struct HostOutcome {
    pub finished: Vec<ObjectResult>,
    pub metrics: Vec<(String, f64)>,
    pub verdicts: Vec<(String, Verdict)>,
    pub phases: Vec<Phase>,
    pub read_failures: Vec<(String, u64, Verdict)>,
    pub read_failure_count: u64,
    /// The first read, stat, list, delete or job that could not be done (or a malformed job).
    pub error: Option<Error>,
    pub log_summary: Option<crate::events::Note>,
    /// `verify` calls not done: the sink keeps nothing.
    pub unverifiable: u64,
}
