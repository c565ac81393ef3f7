//! The host side of the contract: what `open`, `write`, `fill`, `commit`, `wait-all`, `verify`… do.
//!
//! A target is a [`Recipe`] under construction. Plugin bytes become `Bytes` segments; `fill` becomes a
//! `Fill` segment that points into the run's data stream (one stream per data profile, so the dedup
//! domain is the whole run, each fill starting on a dedup-unit boundary); fields and reserved regions
//! are placeholders resolved at `commit`. A committed recipe goes to the executor as a job and `commit`
//! returns at once; `wait-all` waits for the executor's finished-object reports. In verify mode a
//! commit reads the object back and compares it instead of writing.
//!
//! Misuse that a well-behaved plugin never commits — a name outside the target root, a `write` over
//! the per-call limit, too many open targets or plugin bytes — traps: the message is kept in
//! [`HostState::violation`] and the run fails naming the plugin.

use super::dgen::plugin::host::{Host, HostTarget};
use super::dgen::plugin::types::{self as wit, DataProfile, FieldKind, LogLevel};
use super::Limits;
use crate::exec::{Content, ObjectJob, ObjectResult, Recipe, Segment};
use crate::gen::{Generator, Profile};
use crate::pool::BufferPool;
use crate::sink::Sink;
use crate::verify::{self, Verdict};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};

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
}

impl TargetState {
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let bytes: Arc<[u8]> = std::mem::take(&mut self.pending).into();
            self.recipe.push(Segment::Bytes(bytes));
        }
    }

    fn size(&self) -> u64 {
        self.recipe.size() + self.pending.len() as u64
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
    /// Where committed objects go (write mode); `None` once the run is over.
    pub jobs: Option<Sender<ObjectJob>>,
    /// Finished objects, from the executor.
    pub done: Receiver<ObjectResult>,
    pub cancel: Arc<AtomicBool>,
    pub quiet: bool,
}

/// The store's data: everything the host functions touch.
pub struct HostState {
    table: ResourceTable,
    pub(crate) store_limits: StoreLimits,
    pub(crate) limits: Limits,
    pub(crate) panic_message: Option<String>,
    pub(crate) violation: Option<String>,
    /// Wall time spent blocked in `wait-all` and `verify` (not held against the deadline).
    pub(crate) blocked: Duration,
    pub(crate) deadline_hit: bool,
    ctx: RunContext,
    /// One generator and stream cursor per data profile used.
    gens: Vec<(Profile, Arc<Generator>, u64)>,
    open_targets: usize,
    plugin_bytes: u64,
    committed: u64,
    recipes: HashMap<String, Arc<Recipe>>,
    /// Commit order of each name, so `wait-all` reports in a deterministic order.
    commit_seq: HashMap<String, u64>,
    /// Finished objects not yet returned by `wait-all`.
    unreported: Vec<ObjectResult>,
    pub finished: Vec<ObjectResult>,
    pub metrics: Vec<(String, f64)>,
    /// Verify mode: each object's verdict, in commit order.
    pub verdicts: Vec<(String, Verdict)>,
    /// The executor stopped (an error or Ctrl-C): nothing more will finish.
    pub writes_stopped: bool,
    started: Instant,
}

type HostResult<T> = wasmtime::Result<Result<T, String>>;

impl HostState {
    pub fn new(ctx: RunContext, limits: Limits) -> HostState {
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory)
            .instances(4)
            .tables(16)
            .memories(2)
            .trap_on_grow_failure(true)
            .build();
        let gen = Arc::new(Generator::new(ctx.seed, ctx.profile));
        HostState {
            table: ResourceTable::new(),
            store_limits,
            limits,
            panic_message: None,
            violation: None,
            blocked: Duration::ZERO,
            deadline_hit: false,
            gens: vec![(ctx.profile, gen, 0)],
            ctx,
            open_targets: 0,
            plugin_bytes: 0,
            committed: 0,
            recipes: HashMap::new(),
            commit_seq: HashMap::new(),
            unreported: Vec::new(),
            finished: Vec::new(),
            metrics: Vec::new(),
            verdicts: Vec::new(),
            writes_stopped: false,
            started: Instant::now(),
        }
    }

    /// Ends the run's intake: no more jobs will come.
    pub fn close_jobs(&mut self) {
        self.ctx.jobs.take();
    }

    /// Targets still open when the plugin stops are dropped: nothing of them is written.
    pub fn abort_open_targets(&mut self) {
        self.table = ResourceTable::new();
        self.open_targets = 0;
    }

    /// Traps the plugin with `message` (kept for the error report).
    fn violate(&mut self, message: String) -> wasmtime::Error {
        self.violation.get_or_insert(message.clone());
        wasmtime::format_err!("{message}")
    }

    fn target(&mut self, t: &Resource<TargetState>) -> wasmtime::Result<&mut TargetState> {
        self.table.get_mut(t).map_err(|e| wasmtime::format_err!("bad target handle: {e}"))
    }

    fn generator(&mut self, profile: Option<DataProfile>) -> Result<usize, String> {
        let p = match profile {
            None => return Ok(0),
            Some(p) => Profile::new(p.dedup, p.compress, self.ctx.profile.unit()).map_err(|e| e.to_string())?,
        };
        if let Some(i) = self.gens.iter().position(|(q, _, _)| *q == p) {
            return Ok(i);
        }
        // Each extra profile gets its own stream, so its blocks never collide with the run's.
        self.gens.push((p, Arc::new(Generator::new(self.ctx.seed, p)), 0));
        Ok(self.gens.len() - 1)
    }

    /// Receives finished-object reports until `pred` holds or the executor stops.
    fn wait_until(&mut self, mut pred: impl FnMut(&Self) -> bool) {
        while !pred(self) && !self.writes_stopped {
            match self.ctx.done.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => {
                    self.finished.push(r.clone());
                    self.unreported.push(r);
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

    fn verify_recipe(&self, name: &str, recipe: &Arc<Recipe>) -> Result<Verdict, String> {
        let reader = self.ctx.sink.open(name).map_err(|e| e.to_string())?;
        let content = Content::Recipe(recipe.clone());
        verify::compare_object(reader, &self.gens[0].1, &content, recipe.size(), &self.ctx.pool)
            .map_err(|e| e.to_string())
    }
}

impl HostState {
    fn verify_inner(&mut self, name: &str) -> Result<u64, String> {
        let Some(recipe) = self.recipes.get(name).cloned() else {
            return Err(format!("'{name}' was not committed in this run"));
        };
        if self.ctx.mode == Mode::Write {
            self.wait_until(|s| s.finished.iter().any(|r| r.name == name));
            if !self.finished.iter().any(|r| r.name == name) {
                return Err(format!("'{name}' was not written (the run's writes have stopped)"));
            }
        }
        match self.verify_recipe(name, &recipe) {
            Ok(Verdict::Identical { bytes, .. }) => Ok(bytes),
            Ok(v) => Err(format!("'{name}': {v}")),
            Err(e) => Err(e),
        }
    }
}

/// Computes the fields of a recipe in order: each over all bytes before it (earlier fields included).
fn resolve_fields(recipe: &mut Recipe, fields: &[(usize, FieldKind)]) {
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    let mut pos = 0u64;
    let mut buf = Vec::new();
    for &(idx, kind) in fields {
        let at = recipe.segment_offset(idx);
        while pos < at {
            let n = (at - pos).min(4 << 20) as usize;
            buf.resize(n, 0);
            recipe.fill(pos, &mut buf);
            digest.update(&buf);
            pos += n as u64;
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
}

fn field_len(kind: FieldKind) -> usize {
    match kind {
        FieldKind::Crc32cLe | FieldKind::Crc32cBe => 4,
        FieldKind::LengthLe | FieldKind::LengthBe => 8,
    }
}

impl HostTarget for HostState {
    fn write(&mut self, t: Resource<TargetState>, bytes: Vec<u8>) -> HostResult<()> {
        if bytes.len() > self.limits.max_write {
            let m =
                format!("write of {} bytes exceeds the {} bytes allowed per call", bytes.len(), self.limits.max_write);
            return Err(self.violate(m));
        }
        self.plugin_bytes += bytes.len() as u64;
        if self.plugin_bytes > self.limits.max_plugin_bytes {
            let m = format!("wrote more than {} plugin-made bytes in this run", self.limits.max_plugin_bytes);
            return Err(self.violate(m));
        }
        self.target(&t)?.pending.extend_from_slice(&bytes);
        Ok(Ok(()))
    }

    fn fill(&mut self, t: Resource<TargetState>, len: u64, profile: Option<DataProfile>) -> HostResult<()> {
        let g = match self.generator(profile) {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        let unit = self.ctx.profile.unit();
        let (_, gen, cursor) = &mut self.gens[g];
        let offset = cursor.div_ceil(unit) * unit;
        *cursor = offset + len;
        let seg = Segment::Fill { gen: gen.clone(), stream: g as u64, offset, len };
        let target = self.target(&t)?;
        target.flush();
        target.recipe.push(seg);
        Ok(Ok(()))
    }

    fn write_field(&mut self, t: Resource<TargetState>, kind: FieldKind) -> HostResult<()> {
        let target = self.target(&t)?;
        target.flush();
        let idx = target.recipe.segment_count();
        target.recipe.push(Segment::Bytes(vec![0u8; field_len(kind)].into()));
        target.fields.push((idx, kind));
        Ok(Ok(()))
    }

    fn reserve(&mut self, t: Resource<TargetState>, len: u32) -> HostResult<u32> {
        if len as usize > self.limits.max_write {
            let m = format!("reserve of {len} bytes exceeds the {} bytes allowed per call", self.limits.max_write);
            return Err(self.violate(m));
        }
        self.plugin_bytes += len as u64;
        let target = self.target(&t)?;
        target.flush();
        let idx = target.recipe.segment_count();
        if len > 0 {
            target.recipe.push(Segment::Bytes(vec![0u8; len as usize].into()));
        }
        target.reserves.push((idx, len, len == 0));
        Ok(Ok((target.reserves.len() - 1) as u32))
    }

    fn patch(&mut self, t: Resource<TargetState>, region: u32, bytes: Vec<u8>) -> HostResult<()> {
        let target = self.target(&t)?;
        let Some(r) = target.reserves.get_mut(region as usize) else {
            return Ok(Err(format!("no reserved region {region}")));
        };
        if bytes.len() != r.1 as usize {
            return Ok(Err(format!("region {region} is {} bytes, the patch {}", r.1, bytes.len())));
        }
        r.2 = true;
        let idx = r.0;
        if !bytes.is_empty() {
            target.recipe.replace(idx, Segment::Bytes(bytes.into()));
        }
        Ok(Ok(()))
    }

    fn size(&mut self, t: Resource<TargetState>) -> wasmtime::Result<u64> {
        Ok(self.target(&t)?.size())
    }

    fn commit(&mut self, t: Resource<TargetState>) -> HostResult<()> {
        // Resolving fields and (in verify mode) reading back take host time, not the plugin's.
        let started = Instant::now();
        let r = self.commit_inner(t);
        self.blocked += started.elapsed();
        r
    }

    fn drop(&mut self, t: Resource<TargetState>) -> wasmtime::Result<()> {
        // Dropped without commit: nothing was handed to the sink, so nothing to undo.
        if self.table.delete(t).is_ok() {
            self.open_targets -= 1;
        }
        Ok(())
    }
}

impl HostState {
    fn commit_inner(&mut self, t: Resource<TargetState>) -> HostResult<()> {
        let mut target = match self.table.delete(t) {
            Ok(target) => target,
            Err(e) => return Err(wasmtime::format_err!("bad target handle: {e}")),
        };
        self.open_targets -= 1;
        if let Some((i, _)) = target.reserves.iter().enumerate().find(|(_, r)| !r.2) {
            return Ok(Err(format!("'{}': region {i} was reserved but never patched", target.name)));
        }
        target.flush();
        if let Some(hint) = target.size_hint {
            if hint != target.recipe.size() && !self.ctx.quiet {
                eprintln!(
                    "[{}] note: '{}' is {} bytes, its size hint said {hint}",
                    self.ctx.plugin,
                    target.name,
                    target.recipe.size()
                );
            }
        }
        let fields = std::mem::take(&mut target.fields);
        resolve_fields(&mut target.recipe, &fields);
        let recipe = Arc::new(target.recipe);
        self.recipes.insert(target.name.clone(), recipe.clone());
        self.commit_seq.insert(target.name.clone(), self.committed);
        self.committed += 1;
        match self.ctx.mode {
            Mode::Write => {
                let job = ObjectJob { name: target.name, size: recipe.size(), content: Content::Recipe(recipe) };
                let sent = self.ctx.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
                if !sent {
                    self.writes_stopped = true;
                    return Ok(Err("the run's writes have stopped (see the error report)".into()));
                }
            }
            Mode::Verify => {
                let started = Instant::now();
                let verdict = self.verify_recipe(&target.name, &recipe);
                let verdict = match verdict {
                    Ok(v) => v,
                    Err(e) => Verdict::Unreadable { reason: e },
                };
                let crc32c = match &verdict {
                    Verdict::Identical { crc32c, .. } => Some(*crc32c),
                    _ => None,
                };
                let r =
                    ObjectResult { name: target.name.clone(), size: recipe.size(), crc32c, latency: started.elapsed() };
                self.finished.push(r.clone());
                self.unreported.push(r);
                self.verdicts.push((target.name, verdict));
            }
        }
        Ok(Ok(()))
    }
}

impl Host for HostState {
    fn open(&mut self, name: String, size_hint: Option<u64>) -> HostResult<Resource<TargetState>> {
        if let Err(e) = crate::sink::check_name(&name) {
            let reason = match e {
                crate::Error::InvalidValue { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(self.violate(format!("target name '{name}' {reason}")));
        }
        if self.open_targets >= self.limits.max_open_targets {
            let m = format!("more than {} targets open at once", self.limits.max_open_targets);
            return Err(self.violate(m));
        }
        let state = TargetState {
            name,
            size_hint,
            recipe: Recipe::default(),
            pending: Vec::new(),
            reserves: Vec::new(),
            fields: Vec::new(),
        };
        let r = self.table.push(state).map_err(|e| wasmtime::format_err!("{e}"))?;
        self.open_targets += 1;
        Ok(Ok(r))
    }

    fn wait_all(&mut self) -> HostResult<Vec<wit::ObjectStats>> {
        let committed = self.committed as usize;
        let t = Instant::now();
        self.wait_until(|s| s.finished.len() >= committed);
        self.blocked += t.elapsed();
        if self.finished.len() < committed {
            return Ok(Err("the run's writes have stopped (see the error report)".into()));
        }
        // Completion order varies from run to run; commit order does not.
        let seq = &self.commit_seq;
        self.unreported.sort_by_key(|r| seq.get(&r.name).copied().unwrap_or(u64::MAX));
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
        let t = Instant::now();
        let r = self.verify_inner(&name);
        self.blocked += t.elapsed();
        Ok(r)
    }

    fn params(&mut self) -> wasmtime::Result<String> {
        Ok(self.ctx.params_json.clone())
    }

    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        let show = match level {
            LogLevel::Debug => std::env::var_os("DGEN_DEBUG").is_some(),
            LogLevel::Info => !self.ctx.quiet,
            LogLevel::Warn | LogLevel::Error => true,
        };
        if show {
            let tag = match level {
                LogLevel::Debug => "debug",
                LogLevel::Info => "info",
                LogLevel::Warn => "warning",
                LogLevel::Error => "error",
            };
            eprintln!("[{}] {tag}: {message}", self.ctx.plugin);
        }
        Ok(())
    }

    fn metric(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        self.metrics.push((name, value));
        Ok(())
    }

    fn totals(&mut self) -> wasmtime::Result<wit::RunTotals> {
        Ok(wit::RunTotals {
            bytes: self.finished.iter().map(|r| r.size).sum(),
            objects: self.finished.len() as u64,
            seconds: self.started.elapsed().as_secs_f64(),
        })
    }

    fn report_panic(&mut self, message: String) -> wasmtime::Result<()> {
        self.panic_message.get_or_insert(message);
        Ok(())
    }
}

impl super::dgen::plugin::types::Host for HostState {}
