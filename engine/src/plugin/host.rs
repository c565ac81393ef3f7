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

mod reads;

use super::dgen::plugin::host::{Host, HostTarget};
use super::dgen::plugin::types::{self as wit, DataProfile, FieldKind, LogLevel};
use super::Limits;
use crate::error::Error;
use crate::events::{Event, Events};
use crate::generator::{DataKeys, Generator, Profile};
use crate::input::sanitize;
use crate::object::{Content, Recipe, Segment};
use crate::pipeline::executor::{ObjectJob, ObjectResult};
use crate::pipeline::phase::Phase;
use crate::pipeline::read::{ReadResult, Reads};
use crate::pipeline::verify::{self, Verdict};
use crate::pool::BufferPool;
use crate::sink::{Capabilities, Sink};
use crate::size::format_size;
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Linker, Resource, ResourceTable, WasmList, WasmStr};
use wasmtime::StoreContextMut;

/// What the host charges, beyond the bytes themselves, for the records it keeps (measured with
/// generous rounding: map entries, `Vec` growth, allocator overhead).
mod cost {
    /// An open target: its table entry, its state, its entry in the run's name map.
    pub const TARGET: usize = 512;
    /// One segment of a layout, with `Vec` doubling.
    pub const SEGMENT: usize = 96;
    /// A committed object's records: name map entry, recipe, executor job, finished record.
    pub const OBJECT: usize = 768;
    /// Copies of an object's name the host keeps (map key, job, finished record, report).
    pub const NAME_COPIES: usize = 4;
    /// A metric record.
    pub const METRIC: usize = 64;
    /// A verify-mode verdict.
    pub const VERDICT: usize = 256;
    /// An object the reader threads keep open (its handle, path and map entry, its name aside).
    pub const OPEN_READER: usize = 1024;
    /// A failed read's record in the user's report.
    pub const READ_FAILURE: usize = 256;
    /// The allocator's share of one small allocation (an `Arc` of plugin bytes).
    pub const ALLOCATION: usize = 32;
    /// A reserved region's or a field's entry, with `Vec` doubling.
    pub const ENTRY: usize = 32;
}

/// Longest metric name, bytes.
pub const MAX_METRIC_NAME: usize = 256;
/// Longest plugin log line shown, characters (the rest is cut and counted).
pub const MAX_LOG_LINE: usize = 1000;
/// Log lines shown at once before the rate limit starts, and lines per second after that.
pub const LOG_BURST: f64 = 100.0;
pub const LOG_RATE: f64 = 10.0;
/// The run's data streams: offsets stay below this, so no sum of an offset and a length overflows.
pub const MAX_STREAM: u64 = 1 << 62;

/// The plugin's memory account: its linear memory, its tables, and what the host holds for it, all
/// against one limit (`[limits] memory`). Wasmtime asks it before any memory or table grows.
pub struct Budget {
    limit: usize,
    guest: usize,
    tables: usize,
    host: usize,
    last_grow: usize,
    /// Of `host`, what earlier ranks in turn left (said in the message).
    carried: usize,
    /// Why the last growth was refused, for the error message.
    pub(crate) refused: Option<String>,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget { limit, guest: 0, tables: 0, host: 0, last_grow: 0, carried: 0, refused: None }
    }

    fn used(&self) -> usize {
        self.guest + self.tables + self.host
    }

    fn breach(&self, adding: usize, what: &str) -> String {
        let carried = match self.carried {
            0 => String::new(),
            n => format!(" (of which {} for the ranks run before this one)", format_size(n as u64)),
        };
        format!(
            "exceeded its memory limit of {} ([limits] memory) {what}: its linear memory {}, tables {}, held by \
             the host for it {}{carried}, {} more asked",
            format_size(self.limit as u64),
            format_size(self.guest as u64),
            format_size(self.tables as u64),
            format_size(self.host as u64),
            format_size(adding as u64),
        )
    }

    /// Refuses (and remembers why) a growth of linear memory or a table past the limit.
    fn admit_growth(&mut self, extra: usize, what: &str) -> wasmtime::Result<()> {
        if self.used().saturating_add(extra) > self.limit {
            let m = self.breach(extra, what);
            self.refused = Some(m.clone());
            return Err(wasmtime::format_err!("{m}"));
        }
        Ok(())
    }

    /// Bytes the host is holding on the plugin's behalf.
    pub fn host_bytes(&self) -> usize {
        self.host
    }
}

impl wasmtime::ResourceLimiter for Budget {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let extra = desired.saturating_sub(current);
        self.admit_growth(extra, "growing its memory")?;
        self.guest += extra;
        self.last_grow = extra;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.guest -= std::mem::take(&mut self.last_grow);
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        // Wasmtime keeps a pointer per element; count two for its bookkeeping.
        let extra = desired.saturating_sub(current).saturating_mul(2 * std::mem::size_of::<usize>());
        self.admit_growth(extra, "growing a table")?;
        self.tables += extra;
        Ok(true)
    }

    fn instances(&self) -> usize {
        4
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        2
    }
}

/// A target being described.
pub struct TargetState {
    name: String,
    size_hint: Option<u64>,
    recipe: Recipe,
    /// Plugin bytes not yet pushed as a segment (small writes coalesce).
    pending: Vec<u8>,
    /// (segment index, length, patched) of reserved regions.
    reserves: Vec<(usize, u32, bool)>,
    /// (segment index, kind) of host-computed fields, in order.
    fields: Vec<(usize, FieldKind)>,
    /// Plugin-made bytes held in segments.
    held: usize,
}

impl TargetState {
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let bytes: Arc<[u8]> = std::mem::take(&mut self.pending).into();
            self.held += bytes.len() + cost::ALLOCATION;
            self.recipe.push(Segment::Bytes(bytes));
        }
    }

    fn size(&self) -> u64 {
        self.recipe.size() + self.pending.len() as u64
    }

    /// What the host holds for this target, as charged to the budget.
    fn footprint(&self) -> usize {
        cost::TARGET
            + 2 * self.name.len()
            + self.recipe.segment_count() * cost::SEGMENT
            + self.held
            + 2 * self.pending.capacity()
            + cost::ENTRY * (self.reserves.len() + self.fields.len())
    }
}

/// Whether commits write or verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Write,
    Verify,
}

/// What the host shares with the rest of the run.
pub struct RunContext {
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

/// A name used in this run.
enum Named {
    Open,
    Committed {
        seq: u64,
        recipe: Arc<Recipe>,
        /// What the plugin was told by its first `verify` of it: a second one does not read again.
        verified: Option<Result<u64, String>>,
        /// The phase it was committed in.
        phase: usize,
        /// Its write has finished (it is durable), with its CRC32C when one was taken.
        durable: bool,
        crc32c: Option<u32>,
        /// The stonewall ended its phase before it was whole: it was removed.
        cut: bool,
        /// Under `dgen-engine verify` (nothing is written: it must be on storage as described), its
        /// identity, worked out once; none when this run writes it.
        identity: Option<crate::object::identity::Identity>,
    },
    /// Described but not written: on storage already (an earlier run's), for reads to check. It
    /// is read only where the stored identity is this one.
    Declared {
        recipe: Arc<Recipe>,
        identity: crate::object::identity::Identity,
    },
}

/// Plugin log lines: escaped, cut to a length, and rate-limited (a token bucket); what the limit held
/// back is counted and summarised.
struct LogGate {
    tokens: f64,
    last: Instant,
    suppressed: u64,
    cut: u64,
}

impl LogGate {
    fn new() -> LogGate {
        LogGate { tokens: LOG_BURST, last: Instant::now(), suppressed: 0, cut: 0 }
    }

    /// Whether a line may be shown now.
    fn admit(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * LOG_RATE).min(LOG_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
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
    ctx: RunContext,
    /// One generator and stream cursor per data profile used.
    gens: Vec<(Profile, Arc<Generator>, u64)>,
    open_targets: usize,
    plugin_bytes: u64,
    committed: u64,
    /// Every name opened or committed in this run: a name is written once.
    names: HashMap<String, Named>,
    /// Finished objects not yet returned by `wait-all`.
    unreported: Vec<ObjectResult>,
    pub finished: Vec<ObjectResult>,
    pub metrics: Vec<(String, f64)>,
    /// Each read-back's verdict, in order (every commit in verify mode; `verify` calls in write mode).
    pub verdicts: Vec<(String, Verdict)>,
    /// The executor stopped (an error or Ctrl-C): nothing more will finish.
    pub writes_stopped: bool,
    /// Committed objects the stonewall cut (they are not in `finished`).
    pub cut: u64,
    /// Meeting points of all ranks passed so far (phase starts, barriers, world totals): the
    /// current stretch's number, the same on every rank, for stonewalling.
    pub(crate) phase_seq: u64,
    /// Objects committed and reads issued when the current stretch began.
    stretch_mark: (u64, u64),
    /// The run's phases, in order; the last is current.
    pub phases: Vec<Phase>,
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
    pub read_failures: Vec<(String, u64, Verdict)>,
    pub read_failure_count: u64,
    /// The first read (or stat, list, delete) that could not be done: the run's error.
    pub read_error: Option<Error>,
    started: Instant,
    /// When the progress line was last told how reads go.
    read_told: Instant,
    logs: LogGate,
    /// Scratch for resolving fields, kept across commits.
    scratch: Vec<u8>,
}

type HostResult<T> = wasmtime::Result<Result<T, String>>;

impl HostState {
    pub fn new(ctx: RunContext, limits: Limits) -> HostState {
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
            phase_seq: 0,
            stretch_mark: (0, 0),
            phases: vec![first],
            phase_cost: reads::phase_cost(),
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
        }
    }

    /// Starts the plugin's account with `bytes` already held for it in this process (what earlier
    /// ranks run in turn keep for the merged report). A plugin that leaves more than its limit
    /// across ranks is stopped like one that holds it at once.
    pub fn carry(&mut self, bytes: usize) {
        self.budget.host += bytes;
        self.budget.carried = bytes;
    }

    /// Ends the run's intake: no more jobs will come.
    pub fn close_jobs(&mut self) {
        self.ctx.jobs.take();
    }

    /// Takes the reports of objects that finished after the plugin's last wait (once the executor is
    /// done), so the run's list is whole.
    pub fn collect_finished(&mut self) {
        while let Ok(r) = self.ctx.done.try_recv() {
            if !self.attribute(&r) {
                self.finished.push(r);
            }
        }
    }

    /// Targets still open when the plugin stops are dropped: nothing of them is written.
    pub fn abort_open_targets(&mut self) {
        self.table = ResourceTable::new();
        self.open_targets = 0;
        self.names.retain(|_, n| !matches!(n, Named::Open));
    }

    /// What the log rate limit held back, and how many lines were cut, for the end of the run.
    pub fn log_summary(&self) -> Option<String> {
        let g = &self.logs;
        if g.suppressed == 0 && g.cut == 0 {
            return None;
        }
        Some(format!(
            "[{}] note: {} log lines not shown (more than {LOG_BURST} at once or {LOG_RATE} a second), {} cut to {MAX_LOG_LINE} characters",
            self.ctx.plugin, g.suppressed, g.cut
        ))
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
        wasmtime::format_err!("{message}")
    }

    /// Traps naming the limit unless `bytes` more fit in the budget.
    fn fits(&mut self, bytes: usize, what: &str) -> wasmtime::Result<()> {
        if self.budget.used().saturating_add(bytes) > self.budget.limit {
            let m = self.budget.breach(bytes, what);
            return Err(self.violate(m));
        }
        Ok(())
    }

    /// Charges `bytes` held for the plugin, or traps naming the limit.
    fn charge(&mut self, bytes: usize, what: &str) -> wasmtime::Result<()> {
        self.fits(bytes, what)?;
        self.budget.host += bytes;
        Ok(())
    }

    fn release(&mut self, bytes: usize) {
        self.budget.host = self.budget.host.saturating_sub(bytes);
    }

    /// Runs `f` on a target, charging the change in what the host holds for it. `growth` is what the
    /// call may add at most, checked before `f` runs, so nothing is allocated past the limit.
    fn with_target<R>(
        &mut self,
        t: &Resource<TargetState>,
        growth: usize,
        what: &str,
        f: impl FnOnce(&mut TargetState) -> R,
    ) -> wasmtime::Result<R> {
        self.fits(growth, what)?;
        let target = self.table.get_mut(t).map_err(|e| wasmtime::format_err!("bad target handle: {e}"))?;
        let before = target.footprint();
        let r = f(target);
        let after = target.footprint();
        if after >= before {
            self.budget.host += after - before;
        } else {
            self.release(before - after);
        }
        Ok(r)
    }

    fn target(&mut self, t: &Resource<TargetState>) -> wasmtime::Result<&mut TargetState> {
        self.table.get_mut(t).map_err(|e| wasmtime::format_err!("bad target handle: {e}"))
    }

    fn generator(&mut self, profile: Option<DataProfile>) -> wasmtime::Result<Result<usize, String>> {
        let p = match profile {
            None => return Ok(Ok(0)),
            // The run's unit and extent: a fill's own profile changes its ratios, not where copies fall.
            Some(p) => match Profile::new(p.dedup, p.compress, self.ctx.profile.unit())
                .and_then(|q| q.with_extent(self.ctx.profile.extent()))
            {
                Ok(p) => p,
                Err(e) => return Ok(Err(e.to_string())),
            },
        };
        self.generator_of(p)
    }

    /// The generator of `p` (made once per distinct profile, each with a stream of its own so its
    /// blocks never collide with the run's), charged to the plugin: its copy table can be megabytes.
    fn generator_of(&mut self, p: Profile) -> wasmtime::Result<Result<usize, String>> {
        if let Some(i) = self.gens.iter().position(|(q, _, _)| *q == p) {
            return Ok(Ok(i));
        }
        let gen = Generator::new(self.ctx.seed, p.clone())
            .for_rank(self.ctx.world.rank().into(), self.ctx.world.size().into());
        self.charge(std::mem::size_of::<Generator>() + gen.table_bytes(), "data profiles")?;
        self.gens.push((p, Arc::new(gen), 0));
        Ok(Ok(self.gens.len() - 1))
    }

    /// Appends `len` bytes of generator `g`'s stream to a target.
    fn fill_from(&mut self, t: Resource<TargetState>, len: u64, g: usize) -> HostResult<()> {
        let unit = self.ctx.profile.unit();
        let cursor = self.gens[g].2;
        // A fill right after a fill of the same stream on this target, with nothing taken from the
        // stream in between, continues it: consecutive fills are one segment.
        let target = self.target(&t)?;
        let continues = target.pending.is_empty() && target.recipe.trailing_fill() == Some((g as u64, cursor));
        let offset = if continues { cursor } else { cursor.div_ceil(unit) * unit };
        if offset.checked_add(len).is_none_or(|end| end > MAX_STREAM) {
            let name = sanitize(&self.target(&t)?.name, 200);
            return Ok(Err(format!(
                "'{name}': a fill of {} would run past the end of the run's data stream ({} per data profile)",
                format_size(len),
                format_size(MAX_STREAM)
            )));
        }
        self.gens[g].2 = offset + len;
        let gen = self.gens[g].1.clone();
        self.with_target(&t, 2 * cost::SEGMENT, "filling", |target| {
            target.flush();
            target.recipe.push_fill(&gen, g as u64, offset, len);
        })?;
        Ok(Ok(()))
    }

    /// A `fill-ext` profile as the engine's, checked as a workload's `[data]` is; errors name the field.
    fn profile_ext(&self, p: wit::DataProfileExt) -> Result<Profile, String> {
        use crate::generator::copies::CopySpec;
        const MAX_ROWS: usize = 4096;
        let field = |e: Error| match e {
            Error::InvalidValue { key, value, reason } => {
                format!("fill-ext: {} = {value}: {reason}", key.trim_start_matches("data.").replace('_', "-"))
            }
            other => format!("fill-ext: {other}"),
        };
        let copies = match p.dedup_copies {
            wit::DedupCopies::Even => None,
            wit::DedupCopies::Zipf(s) => Some(CopySpec::Zipf(s)),
            wit::DedupCopies::Histogram(rows) if rows.len() > MAX_ROWS => {
                return Err(format!("fill-ext: a histogram of {} rows; at most {MAX_ROWS}", rows.len()))
            }
            wit::DedupCopies::Histogram(rows) => {
                Some(CopySpec::histogram(std::path::Path::new(""), rows).map_err(field)?)
            }
        };
        // With a histogram, dedup 0 takes the ratio it implies.
        let implied = matches!(copies, Some(CopySpec::Histogram { .. })) && p.dedup == 0.0;
        let mix = (!p.compress_mix.is_empty()).then_some(p.compress_mix);
        let run = &self.ctx.profile;
        Profile::from_keys(DataKeys {
            dedup: (!implied).then_some(p.dedup),
            compress: if mix.is_some() { 1.0 } else { p.compress },
            unit: run.unit(),
            // 0 is the run's extent (explicitly: a mix here does not bring its own default).
            extent: Some(if p.dedup_extent == 0 { run.extent() } else { p.dedup_extent }),
            mix,
            copies,
        })
        .map_err(field)
    }

    /// Whether a target may grow by `len` bytes: within what the sink takes for one object.
    fn check_growth(&mut self, t: &Resource<TargetState>, len: u64) -> wasmtime::Result<Result<(), String>> {
        let max = self.caps.max_object;
        let target = self.target(t)?;
        match target.size().checked_add(len) {
            Some(n) if n <= max => Ok(Ok(())),
            _ => Ok(Err(format!(
                "'{}' would be larger than the {} the target takes for one object",
                sanitize(&target.name, 200),
                format_size(max)
            ))),
        }
    }

    /// Receives finished-object reports until `pred` holds or the executor stops.
    /// Every object committed so far has ended, whole or cut by a stonewall.
    fn writes_ended(&self) -> bool {
        self.finished.len() + self.cut as usize >= self.committed as usize
    }

    fn wait_until(&mut self, mut pred: impl FnMut(&Self) -> bool) {
        while !pred(self) && !self.writes_stopped {
            match self.ctx.done.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => {
                    if !self.attribute(&r) {
                        self.finished.push(r.clone());
                        self.unreported.push(r);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if self.ctx.cancel.load(Ordering::Relaxed) {
                        self.writes_stopped = true;
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => self.writes_stopped = true,
            }
        }
    }

    /// Waits until the write of `name`, committed in this run, is durable; an error for the plugin
    /// when the run's writes stopped first. Time waiting is not held against the deadline.
    fn wait_durable(&mut self, name: &str) -> HostResult<()> {
        let durable = |s: &Self| matches!(s.names.get(name), Some(Named::Committed { durable: true, .. }));
        let settled = |s: &Self| {
            matches!(
                s.names.get(name),
                Some(Named::Committed { durable: true, .. } | Named::Committed { cut: true, .. })
            )
        };
        let t = Instant::now();
        self.wait_until(settled);
        self.blocked += t.elapsed();
        if self.ctx.cancel.load(Ordering::Relaxed) {
            return Err(self.interrupted_trap());
        }
        if matches!(self.names.get(name), Some(Named::Committed { cut: true, .. })) {
            return Ok(Err(format!(
                "'{}' was not written whole: the stonewall ended its phase (another rank finished first)",
                sanitize(name, 200)
            )));
        }
        if !durable(self) {
            return Ok(Err(format!("'{}' was not written (the run's writes have stopped)", sanitize(name, 200))));
        }
        Ok(Ok(()))
    }

    /// Reads an object back and compares it with its recipe. The verdict (with the offset and the
    /// bytes found) is the user's; the caller tells the plugin only identical or not.
    fn read_back(
        &mut self,
        name: &str,
        recipe: &Arc<Recipe>,
        want: crate::object::identity::Identity,
    ) -> Result<Verdict, Error> {
        let t = Instant::now();
        let result = (|| {
            let reader = self.ctx.sink.open(name)?;
            // Only an object that carries `want`, the identity of this description, is compared:
            // anything else (a file the engine did not write, another object) is not what was
            // described. Where the store keeps no identities, only what this run wrote is read.
            let known = if self.ctx.sink.keeps_identity() {
                reader.identity() == Some(want)
            } else {
                self.ctx.mode == Mode::Write
            };
            if !known {
                return Err(Error::sink(
                    name,
                    "carries no identity of what was described: not an object this engine wrote with this content",
                ));
            }
            let content = Content::Recipe(recipe.clone());
            verify::compare_object(reader, &self.gens[0].1, &content, recipe.size(), &self.ctx.pool, &self.ctx.cancel)
        })();
        self.blocked += t.elapsed();
        match result {
            Err(Error::Cancelled) => Err(Error::Cancelled),
            Err(e) => Ok(Verdict::Unreadable { reason: e.to_string() }),
            Ok(v) => Ok(v),
        }
    }

    /// Records a read-back's verdict for the user; what the plugin may learn of it.
    fn record_verdict(&mut self, name: &str, verdict: Verdict) -> wasmtime::Result<Result<u64, String>> {
        self.charge(cost::VERDICT + name.len(), "recording a read-back")?;
        let told = match &verdict {
            Verdict::Identical { bytes, .. } => Ok(*bytes),
            _ => Err(format!("'{}' does not match what was written (see the run's report)", sanitize(name, 200))),
        };
        self.verdicts.push((name.to_string(), verdict));
        Ok(told)
    }

    fn interrupted_trap(&mut self) -> wasmtime::Error {
        self.interrupted = true;
        wasmtime::format_err!("interrupted")
    }

    fn verify_inner(&mut self, name: &str) -> wasmtime::Result<Result<u64, String>> {
        let (recipe, identity) = match self.names.get(name) {
            Some(Named::Committed { verified: Some(told), .. }) => return Ok(told.clone()),
            Some(Named::Committed { recipe, identity, .. }) => (recipe.clone(), *identity),
            _ => return Ok(Err(format!("'{}' was not committed in this run", sanitize(name, 200)))),
        };
        if self.ctx.mode == Mode::Write {
            if let Err(e) = self.wait_durable(name)? {
                return Ok(Err(e));
            }
        }
        // Written in this run: its identity is needed only now, once (a second verify is told the
        // first answer).
        let want = identity.unwrap_or_else(|| crate::object::identity::Identity::of_recipe(&recipe));
        let verdict = match self.read_back(name, &recipe, want) {
            Ok(v) => v,
            Err(_) => return Err(self.interrupted_trap()),
        };
        let told = self.record_verdict(name, verdict)?;
        if let Some(Named::Committed { verified, .. }) = self.names.get_mut(name) {
            *verified = Some(told.clone());
        }
        Ok(told)
    }

    /// Computes the fields of a recipe in order, each over all bytes before it (earlier fields
    /// included). This is host work done for the plugin: it counts against the plugin's deadline and
    /// stops on Ctrl-C.
    fn resolve_fields(&mut self, recipe: &mut Recipe, fields: &[(usize, FieldKind)]) -> wasmtime::Result<()> {
        use rayon::prelude::*;
        const PIECE: usize = 1 << 20;
        let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
        let mut pos = 0u64;
        let mut buf = std::mem::take(&mut self.scratch);
        for &(idx, kind) in fields {
            let at = recipe.segment_offset(idx);
            if matches!(kind, FieldKind::Crc32cLe | FieldKind::Crc32cBe) {
                // Earlier fields are resolved by now, so the digest covers their values.
                while pos < at {
                    if self.ctx.cancel.load(Ordering::Relaxed) {
                        self.scratch = buf;
                        return Err(self.interrupted_trap());
                    }
                    if self.own_time() > self.limits.deadline {
                        self.deadline_hit = true;
                        self.scratch = buf;
                        return Err(wasmtime::format_err!("deadline"));
                    }
                    let n = (at - pos).min(8 << 20) as usize;
                    buf.resize(n, 0);
                    let r = &*recipe;
                    buf.par_chunks_mut(PIECE).enumerate().for_each(|(i, c)| r.fill(pos + (i * PIECE) as u64, c));
                    digest.update(&buf);
                    pos += n as u64;
                }
            }
            let crc = digest.finalize() as u32;
            let value: Vec<u8> = match kind {
                FieldKind::Crc32cLe => crc.to_le_bytes().to_vec(),
                FieldKind::Crc32cBe => crc.to_be_bytes().to_vec(),
                FieldKind::LengthLe => at.to_le_bytes().to_vec(),
                FieldKind::LengthBe => at.to_be_bytes().to_vec(),
            };
            recipe.replace(idx, Segment::Bytes(value.into()));
        }
        buf.clear();
        buf.shrink_to(8 << 20);
        self.scratch = buf;
        Ok(())
    }
}

/// What the plugin is told of an object that is not there, or that it may not see: the same words
/// for both, so it cannot tell them apart.
pub(crate) fn no_such(name: &str) -> String {
    format!("'{}': no such object", sanitize(name, 200))
}

fn field_len(kind: FieldKind) -> u64 {
    match kind {
        FieldKind::Crc32cLe | FieldKind::Crc32cBe => 4,
        FieldKind::LengthLe | FieldKind::LengthBe => 8,
    }
}

/// The calls whose arguments are plugin-sized (`write`, `patch`, `open`, `log`, `metric`, `verify`,
/// `report-panic`) are defined here over the plugin's memory, replacing the generated ones: the size
/// is checked before the host copies a byte.
pub(crate) fn add_guarded_calls(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut host = linker.instance("dgen:plugin/host@1.1.0")?;
    type Cx<'a> = StoreContextMut<'a, HostState>;
    host.func_wrap("[method]target.write", |mut store: Cx<'_>, (t, bytes): (Resource<TargetState>, WasmList<u8>)| {
        let max = store.data().limits.max_write;
        if bytes.len() > max {
            let m = format!("write of {} bytes exceeds the {max} bytes allowed per call", bytes.len());
            return Err(store.data_mut().violate(m));
        }
        let data = bytes.as_le_slice(&store).to_vec();
        Ok((store.data_mut().write_bytes(t, data)?,))
    })?;
    host.func_wrap(
        "[method]target.patch",
        |mut store: Cx<'_>, (t, region, bytes): (Resource<TargetState>, u32, WasmList<u8>)| {
            let max = store.data().limits.max_write;
            if bytes.len() > max {
                let m = format!("patch of {} bytes exceeds the {max} bytes allowed per call", bytes.len());
                return Err(store.data_mut().violate(m));
            }
            let data = bytes.as_le_slice(&store).to_vec();
            Ok((store.data_mut().patch_bytes(t, region, data)?,))
        },
    )?;
    host.func_wrap("open", |mut store: Cx<'_>, (name, hint): (WasmStr, Option<u64>)| {
        let name = guest_str(&mut store, &name, crate::sink::MAX_NAME, "target name")?;
        Ok((store.data_mut().open_target(name, hint)?,))
    })?;
    host.func_wrap("log", |mut store: Cx<'_>, (level, message): (LogLevel, WasmStr)| {
        // Long lines are cut, not refused: read only what will be shown.
        let text = {
            let s = message.to_str(&store)?;
            let s: &str = &s;
            let cut = s.len() > 4 * MAX_LOG_LINE;
            let end = if cut { floor_char(s, 4 * MAX_LOG_LINE) } else { s.len() };
            (s[..end].to_string(), cut)
        };
        store.data_mut().log_line(level, &text.0, text.1);
        Ok(())
    })?;
    host.func_wrap("metric", |mut store: Cx<'_>, (name, value): (WasmStr, f64)| {
        let name = guest_str(&mut store, &name, MAX_METRIC_NAME, "metric name")?;
        store.data_mut().add_metric(name, value)?;
        Ok(())
    })?;
    host.func_wrap("verify", |mut store: Cx<'_>, (name,): (WasmStr,)| {
        let name = guest_str(&mut store, &name, crate::sink::MAX_NAME, "target name")?;
        Ok((store.data_mut().verify_inner(&name)?,))
    })?;
    host.func_wrap(
        "read",
        |mut store: Cx<'_>, (name, offset, len, check): (WasmStr, u64, Option<u64>, wit::ReadCheck)| {
            let name = guest_str(&mut store, &name, crate::sink::MAX_NAME, "object name")?;
            Ok((store.data_mut().read_inner(name, offset, len, read_check(check))?,))
        },
    )?;
    host.func_wrap("stat", |mut store: Cx<'_>, (name,): (WasmStr,)| {
        let name = guest_str(&mut store, &name, crate::sink::MAX_NAME, "object name")?;
        Ok((store.data_mut().stat_inner(name)?,))
    })?;
    host.func_wrap("list", |mut store: Cx<'_>, (prefix,): (WasmStr,)| {
        let prefix = guest_str(&mut store, &prefix, crate::sink::MAX_NAME, "list prefix")?;
        Ok((store.data_mut().list_inner(prefix)?,))
    })?;
    host.func_wrap("delete", |mut store: Cx<'_>, (name,): (WasmStr,)| {
        let name = guest_str(&mut store, &name, crate::sink::MAX_NAME, "object name")?;
        Ok((store.data_mut().delete_inner(name)?,))
    })?;
    host.func_wrap("phase", |mut store: Cx<'_>, (name,): (WasmStr,)| {
        let name = guest_str(&mut store, &name, reads::PHASE_NAME_MAX, "phase name")?;
        store.data_mut().phase_inner(name)
    })?;
    host.func_wrap("report-panic", |mut store: Cx<'_>, (message,): (WasmStr,)| {
        let text = {
            let s = message.to_str(&store)?;
            let s: &str = &s;
            s[..floor_char(s, 4 * MAX_LOG_LINE)].to_string()
        };
        store.data_mut().panic_message.get_or_insert(sanitize(&text, MAX_LOG_LINE));
        Ok(())
    })?;
    Ok(())
}

/// The largest char boundary of `s` at or below `i`.
fn floor_char(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A string argument of at most `max` bytes, copied out of the plugin's memory; longer ones trap.
fn guest_str(
    store: &mut StoreContextMut<'_, HostState>,
    s: &WasmStr,
    max: usize,
    what: &str,
) -> wasmtime::Result<String> {
    let (len, text) = {
        let t = s.to_str(&*store)?;
        (t.len(), if t.len() <= max { Some(t.into_owned()) } else { None })
    };
    match text {
        Some(t) => Ok(t),
        None => {
            let m = format!("{what} of {len} bytes is longer than the {max} bytes allowed");
            Err(store.data_mut().violate(m))
        }
    }
}

impl HostState {
    fn write_bytes(&mut self, t: Resource<TargetState>, bytes: Vec<u8>) -> HostResult<()> {
        if let Err(e) = self.check_growth(&t, bytes.len() as u64)? {
            return Ok(Err(e));
        }
        self.plugin_bytes += bytes.len() as u64;
        if self.plugin_bytes > self.limits.max_plugin_bytes {
            let m = format!("wrote more than {} plugin-made bytes in this run", self.limits.max_plugin_bytes);
            return Err(self.violate(m));
        }
        let growth = 2 * bytes.len() + cost::SEGMENT;
        self.with_target(&t, growth, "writing bytes", |target| target.pending.extend_from_slice(&bytes))?;
        Ok(Ok(()))
    }

    fn patch_bytes(&mut self, t: Resource<TargetState>, region: u32, bytes: Vec<u8>) -> HostResult<()> {
        let target = self.target(&t)?;
        let Some(r) = target.reserves.get(region as usize) else {
            return Ok(Err(format!("no reserved region {region}")));
        };
        if bytes.len() != r.1 as usize {
            return Ok(Err(format!("region {region} is {} bytes, the patch {}", r.1, bytes.len())));
        }
        self.with_target(&t, 0, "patching a region", |target| {
            let r = &mut target.reserves[region as usize];
            let idx = r.0;
            // The region's bytes were charged when it was reserved.
            r.2 = true;
            if !bytes.is_empty() {
                target.recipe.replace(idx, Segment::Bytes(bytes.into()));
            }
        })?;
        Ok(Ok(()))
    }

    fn open_target(&mut self, name: String, size_hint: Option<u64>) -> HostResult<Resource<TargetState>> {
        self.storage_name(&name, "target name")?;
        if self.names.contains_key(&name) {
            return Ok(Err(format!(
                "'{}' was already opened in this run: each name is written once per run",
                sanitize(&name, 200)
            )));
        }
        if self.open_targets >= self.limits.max_open_targets {
            let m = format!("more than {} targets open at once", self.limits.max_open_targets);
            return Err(self.violate(m));
        }
        let state = TargetState {
            name: name.clone(),
            size_hint,
            recipe: Recipe::default(),
            pending: Vec::new(),
            reserves: Vec::new(),
            fields: Vec::new(),
            held: 0,
        };
        self.charge(state.footprint(), "opening a target")?;
        let r = self.table.push(state).map_err(|e| wasmtime::format_err!("{e}"))?;
        self.names.insert(name, Named::Open);
        self.open_targets += 1;
        Ok(Ok(r))
    }

    fn log_line(&mut self, level: LogLevel, message: &str, cut: bool) {
        let show = match level {
            LogLevel::Debug => std::env::var_os("DGEN_DEBUG").is_some(),
            LogLevel::Info => !self.ctx.quiet,
            LogLevel::Warn | LogLevel::Error => true,
        };
        if !show || !self.logs.admit() {
            return;
        }
        let tag = match level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warning",
            LogLevel::Error => "error",
        };
        if cut || message.chars().count() > MAX_LOG_LINE {
            self.logs.cut += 1;
        }
        let (plugin, text) = (self.ctx.plugin.clone(), sanitize(message, MAX_LOG_LINE));
        self.ctx.events.emit(Event::PluginLog { plugin, level: tag, text });
    }

    fn add_metric(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        self.charge(cost::METRIC + 2 * name.len(), "recording a metric")?;
        self.metrics.push((name, value));
        Ok(())
    }
}

impl HostTarget for HostState {
    fn write(&mut self, t: Resource<TargetState>, bytes: Vec<u8>) -> HostResult<()> {
        self.write_bytes(t, bytes)
    }

    fn fill(&mut self, t: Resource<TargetState>, len: u64, profile: Option<DataProfile>) -> HostResult<()> {
        if let Err(e) = self.check_growth(&t, len)? {
            return Ok(Err(e));
        }
        let g = match self.generator(profile)? {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        self.fill_from(t, len, g)
    }

    fn fill_ext(&mut self, t: Resource<TargetState>, len: u64, profile: wit::DataProfileExt) -> HostResult<()> {
        // What the plugin handed over is held for this call: charged while it is checked.
        let held = profile.compress_mix.len() * 16 + profile_rows(&profile) * 16;
        self.charge(held, "a fill-ext profile")?;
        let p = self.profile_ext(profile);
        self.release(held);
        if let Err(e) = self.check_growth(&t, len)? {
            return Ok(Err(e));
        }
        let g = match p {
            Ok(p) => match self.generator_of(p)? {
                Ok(g) => g,
                Err(e) => return Ok(Err(e)),
            },
            Err(e) => return Ok(Err(e)),
        };
        self.fill_from(t, len, g)
    }

    fn write_field(&mut self, t: Resource<TargetState>, kind: FieldKind) -> HostResult<()> {
        if let Err(e) = self.check_growth(&t, field_len(kind))? {
            return Ok(Err(e));
        }
        self.with_target(&t, 3 * cost::SEGMENT, "adding a field", |target| {
            target.flush();
            let idx = target.recipe.segment_count();
            target.recipe.push(Segment::Zeros(field_len(kind)));
            target.fields.push((idx, kind));
        })?;
        Ok(Ok(()))
    }

    fn reserve(&mut self, t: Resource<TargetState>, len: u32) -> HostResult<u32> {
        if len as usize > self.limits.max_write {
            let m = format!("reserve of {len} bytes exceeds the {} bytes allowed per call", self.limits.max_write);
            return Err(self.violate(m));
        }
        if let Err(e) = self.check_growth(&t, len as u64)? {
            return Ok(Err(e));
        }
        self.plugin_bytes += len as u64;
        if self.plugin_bytes > self.limits.max_plugin_bytes {
            let m = format!("wrote more than {} plugin-made bytes in this run", self.limits.max_plugin_bytes);
            return Err(self.violate(m));
        }
        // The region's bytes are charged now: the patch will hold them.
        let growth = len as usize + 3 * cost::SEGMENT;
        let region = self.with_target(&t, growth, "reserving a region", |target| {
            target.flush();
            let idx = target.recipe.segment_count();
            target.recipe.push(Segment::Zeros(len as u64));
            target.reserves.push((idx, len, len == 0));
            target.held += len as usize;
            (target.reserves.len() - 1) as u32
        })?;
        Ok(Ok(region))
    }

    fn patch(&mut self, t: Resource<TargetState>, region: u32, bytes: Vec<u8>) -> HostResult<()> {
        self.patch_bytes(t, region, bytes)
    }

    fn size(&mut self, t: Resource<TargetState>) -> wasmtime::Result<u64> {
        Ok(self.target(&t)?.size())
    }

    fn commit(&mut self, t: Resource<TargetState>) -> HostResult<()> {
        self.commit_inner(t, false)
    }

    fn declare(&mut self, t: Resource<TargetState>) -> HostResult<()> {
        self.commit_inner(t, true)
    }

    fn drop(&mut self, t: Resource<TargetState>) -> wasmtime::Result<()> {
        // Dropped without commit: nothing was handed to the sink, so nothing to undo.
        if let Ok(target) = self.table.delete(t) {
            self.open_targets -= 1;
            self.release(target.footprint());
            self.names.remove(&target.name);
        }
        Ok(())
    }
}

impl HostState {
    fn commit_inner(&mut self, t: Resource<TargetState>, declare: bool) -> HostResult<()> {
        let mut target = match self.table.delete(t) {
            Ok(target) => target,
            Err(e) => return Err(wasmtime::format_err!("bad target handle: {e}")),
        };
        self.open_targets -= 1;
        let footprint = target.footprint();
        if let Some((i, _)) = target.reserves.iter().enumerate().find(|(_, r)| !r.2) {
            self.release(footprint);
            self.names.remove(&target.name);
            return Ok(Err(format!("'{}': region {i} was reserved but never patched", sanitize(&target.name, 200))));
        }
        target.flush();
        if let Some(hint) = target.size_hint {
            if hint != target.recipe.size() && !self.ctx.quiet && self.logs.admit() {
                self.ctx.events.emit(Event::Note(format!(
                    "[{}] '{}' is {} bytes, its size hint said {hint}",
                    self.ctx.plugin,
                    sanitize(&target.name, 200),
                    target.recipe.size()
                )));
            }
        }
        let fields = std::mem::take(&mut target.fields);
        self.resolve_fields(&mut target.recipe, &fields)?;
        // The target's charge becomes the committed object's: its layout, and the records kept of it.
        let name = target.name;
        let keep =
            cost::OBJECT + cost::NAME_COPIES * name.len() + target.recipe.segment_count() * cost::SEGMENT + target.held;
        self.release(footprint);
        self.charge(keep, "committing an object")?;
        let recipe = Arc::new(target.recipe);
        let seq = self.committed;
        self.committed += 1;
        if declare {
            self.committed -= 1;
            let identity = crate::object::identity::Identity::of_recipe(&recipe);
            self.names.insert(name, Named::Declared { recipe, identity });
            return Ok(Ok(()));
        }
        // Under `dgen-engine verify` it is read only as described: its identity, worked out once.
        let identity = (self.ctx.mode == Mode::Verify).then(|| crate::object::identity::Identity::of_recipe(&recipe));
        let phase = self.phases.len() - 1;
        self.names.insert(
            name.clone(),
            Named::Committed {
                seq,
                recipe: recipe.clone(),
                verified: None,
                phase,
                durable: false,
                crc32c: None,
                cut: false,
                identity,
            },
        );
        match self.ctx.mode {
            Mode::Write => {
                let job = ObjectJob { name, size: recipe.size(), content: Content::Recipe(recipe) };
                let sent = self.ctx.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
                if !sent {
                    self.writes_stopped = true;
                    return Ok(Err("the run's writes have stopped (see the error report)".into()));
                }
            }
            Mode::Verify => {
                let started = Instant::now();
                let want = identity.expect("worked out under verify");
                let verdict = match self.read_back(&name, &recipe, want) {
                    Ok(v) => v,
                    Err(_) => return Err(self.interrupted_trap()),
                };
                // What `wait-all` tells the plugin: for an object that differs, no CRC and no
                // timing (how long a comparison ran says where it stopped).
                let (crc32c, latency) = match &verdict {
                    Verdict::Identical { crc32c, .. } => (Some(*crc32c), started.elapsed()),
                    _ => (None, Duration::ZERO),
                };
                let (size, at) = (recipe.size(), Instant::now());
                let r = ObjectResult { name: name.clone(), size, crc32c, latency, at, cut: false };
                self.attribute(&r);
                self.finished.push(r.clone());
                self.unreported.push(r);
                let told = self.record_verdict(&name, verdict)?;
                if let Some(Named::Committed { verified, .. }) = self.names.get_mut(&name) {
                    *verified = Some(told);
                }
            }
        }
        Ok(Ok(()))
    }
}

// The calls taking plugin-sized arguments are linked from `add_guarded_calls` instead; these
// forward to the same code for completeness of the generated traits.
impl Host for HostState {
    fn open(&mut self, name: String, size_hint: Option<u64>) -> HostResult<Resource<TargetState>> {
        self.open_target(name, size_hint)
    }

    fn wait_all(&mut self) -> HostResult<Vec<wit::ObjectStats>> {
        let t = Instant::now();
        self.wait_until(HostState::writes_ended);
        self.blocked += t.elapsed();
        if self.ctx.cancel.load(Ordering::Relaxed) {
            return Err(self.interrupted_trap());
        }
        // Cut objects are not among those returned: what was written whole is.
        if !self.writes_ended() {
            return Ok(Err("the run's writes have stopped (see the error report)".into()));
        }
        // Completion order varies from run to run; commit order does not.
        let names = &self.names;
        let seq = |n: &str| match names.get(n) {
            Some(Named::Committed { seq, .. }) => *seq,
            _ => u64::MAX,
        };
        self.unreported.sort_by_key(|r| seq(&r.name));
        let out = self
            .unreported
            .drain(..)
            .map(|r| wit::ObjectStats {
                name: r.name,
                size: r.size,
                crc32c: r.crc32c.unwrap_or(0),
                latency_us: r.latency.as_micros() as u64,
            })
            .collect();
        Ok(Ok(out))
    }

    fn verify(&mut self, name: String) -> HostResult<u64> {
        self.verify_inner(&name)
    }

    fn params(&mut self) -> wasmtime::Result<String> {
        Ok(self.ctx.params_json.clone())
    }

    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.log_line(level, &message, false);
        Ok(())
    }

    fn metric(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        self.add_metric(name, value)
    }

    fn totals(&mut self) -> wasmtime::Result<wit::RunTotals> {
        Ok(wit::RunTotals {
            bytes: self.finished.iter().map(|r| r.size).sum(),
            objects: self.finished.len() as u64,
            // To the last object finished so far: the same figure the run's report gives.
            seconds: last_finish(&self.finished, self.started).as_secs_f64(),
        })
    }

    fn expect(&mut self, bytes: u64, objects: u64) -> wasmtime::Result<()> {
        // Only for the progress line; a verify pass reads, it has no bar to size.
        if self.ctx.mode == Mode::Write {
            self.ctx.events.emit(Event::Expect { bytes, objects });
        }
        Ok(())
    }

    fn report_panic(&mut self, message: String) -> wasmtime::Result<()> {
        self.panic_message.get_or_insert(sanitize(&message, MAX_LOG_LINE));
        Ok(())
    }

    fn read(&mut self, name: String, offset: u64, len: Option<u64>, check: wit::ReadCheck) -> HostResult<()> {
        self.read_inner(name, offset, len, read_check(check))
    }

    fn wait_reads(&mut self) -> HostResult<Vec<wit::ReadStats>> {
        self.wait_reads_inner()
    }

    fn stat(&mut self, name: String) -> HostResult<Option<u64>> {
        self.stat_inner(name)
    }

    fn list(&mut self, prefix: String) -> HostResult<wit::Listing> {
        self.list_inner(prefix)
    }

    fn delete(&mut self, name: String) -> HostResult<()> {
        self.delete_inner(name)
    }

    fn phase(&mut self, name: String) -> wasmtime::Result<()> {
        self.phase_inner(name)
    }

    fn pause(&mut self, seconds: f64) -> wasmtime::Result<()> {
        self.pause_inner(seconds)
    }

    fn barrier(&mut self) -> wasmtime::Result<()> {
        self.barrier_inner()
    }

    fn world_totals(&mut self, phase: bool) -> wasmtime::Result<wit::RunTotals> {
        self.end_stretch_first()?;
        let own = if phase { self.phase_totals()? } else { self.totals()? };
        let waited = Instant::now();
        let r = self.ctx.world.sum_max(own.bytes, own.objects, own.seconds, &self.ctx.cancel);
        self.blocked += waited.elapsed();
        match r {
            Ok((bytes, objects, seconds)) => {
                self.next_stretch();
                Ok(wit::RunTotals { bytes, objects, seconds })
            }
            Err(_) => Err(self.interrupted_trap()),
        }
    }

    fn facts(&mut self) -> wasmtime::Result<wit::NodeFacts> {
        let f = &self.ctx.facts;
        Ok(wit::NodeFacts {
            node_memory: f.node_memory,
            node_ranks: f.node_ranks,
            page_cache: f.page_cache,
            cache_drop: f.cache_drop,
            cached_fraction: self.phases.last().and_then(|p| p.cached_fraction()),
            results_elsewhere: f.results_elsewhere,
        })
    }

    fn stonewalled(&mut self) -> wasmtime::Result<u64> {
        // Reads taken in so far: the plugin's own wait-reads decides when that is.
        Ok(self.cut + self.phases.iter().map(|p| p.cut_reads).sum::<u64>())
    }

    fn phase_totals(&mut self) -> wasmtime::Result<wit::RunTotals> {
        let p = self.phases.last().expect("a phase");
        Ok(wit::RunTotals { bytes: p.bytes(), objects: p.ops(), seconds: p.seconds() })
    }
}

fn read_check(c: wit::ReadCheck) -> crate::pipeline::read::Check {
    match c {
        wit::ReadCheck::None => crate::pipeline::read::Check::None,
        wit::ReadCheck::Crc => crate::pipeline::read::Check::Crc,
        wit::ReadCheck::Verify => crate::pipeline::read::Check::Verify,
    }
}

impl super::dgen::plugin::types::Host for HostState {}

/// Time from `started` to the last of `objects` finished (to now while none has): the one definition
/// of a run's throughput time, for the report and for the plugin's `totals`.
pub fn last_finish(objects: &[ObjectResult], started: Instant) -> Duration {
    objects.iter().map(|r| r.at).max().map_or_else(|| started.elapsed(), |t| t.saturating_duration_since(started))
}

fn profile_rows(p: &wit::DataProfileExt) -> usize {
    match &p.dedup_copies {
        wit::DedupCopies::Histogram(rows) => rows.len(),
        _ => 0,
    }
}
