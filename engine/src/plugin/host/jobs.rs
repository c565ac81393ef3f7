//! The host side of `job` (contract 1.2): a plugin hands over a whole stream of operations in place
//! and the operations engine runs it natively.
//!
//! What it holds for the plugin, all charged to its budget: each region's generation map (one byte
//! per block, for the run), the job's buffers (while it runs), and the series points it keeps for
//! the report. What the plugin learns: counts, rates and latencies, and the read-back's counts —
//! nothing of what storage holds. What it can touch: objects below the target root that it makes
//! or that the engine made (a file without an identity is refused as in the way). How long it
//! blocks: the job's duration (or its operations), not counted against the deadline; Ctrl-C ends it
//! within a ring's tick.

use super::{HostResult, HostState, Mode};
use crate::error::Error;
use crate::generator::region::RegionData;
use crate::generator::Generator;
use crate::object::identity::Identity;
use crate::ops::genmap::GenMap;
use crate::ops::journal::{Found, Journal, JournalKey};
use crate::ops::record::PhaseOps;
use crate::ops::spec::{JobSpec, OpKind, SpecError, VerifyWhen};
use crate::ops::{self, Driver, JobEnv, Region};
use crate::plugin::dgen::plugin::types as wit;
use crate::sink::{OpenRegion, RegionRequest};
use std::sync::Arc;
use std::time::Instant;

/// Threads the psync driver may start for one job (one per operation in flight).
const MAX_PSYNC_THREADS: u64 = 1024;

/// A region opened in this run, and what the host knows of it.
pub(super) struct RegionState {
    /// Its files as the sink opened them (one, or a pool's).
    opens: Vec<OpenRegion>,
    region: Region,
    data: RegionData,
    map: GenMap,
    /// The map on disk, and its name.
    journal: Option<(Journal, String)>,
    /// Every block's generation is known (written whole in this run, or read from a journal).
    known: bool,
    /// Its complete identity is on it.
    stamped: bool,
    identity: Identity,
}

/// Why a job could not start.
enum Refused {
    Spec(SpecError),
    Storage(Error),
    /// Past the plugin's memory limit: the plugin is stopped.
    Trap(wasmtime::Error),
}

impl From<SpecError> for Refused {
    fn from(e: SpecError) -> Self {
        Refused::Spec(e)
    }
}

fn bad(key: &str, message: impl Into<String>) -> SpecError {
    SpecError { key: key.into(), message: message.into() }
}

/// What part `i` of a region of `n` objects carries (the region's own identity for one).
fn part_identity(region: &Identity, i: usize, n: usize) -> Identity {
    if n == 1 {
        *region
    } else {
        region.derived(&format!("part {i} of {n}"))
    }
}

/// A region's stream: its name's, so two regions of a run never share content.
fn stream_of(name: &str, rank: u32) -> u64 {
    xxhash_rust::xxh3::xxh3_64(format!("region\0{rank}\0{name}").as_bytes())
}

impl HostState {
    pub(super) fn run_job(&mut self, json: String) -> HostResult<wit::JobResult> {
        if self.cancelled() {
            return Err(self.interrupted_trap());
        }
        let mut spec = match JobSpec::parse(&json) {
            Ok(s) => s,
            Err(e) => return Ok(Err(self.refuse_job(Refused::Spec(e)))),
        };
        if !self.ctx.sink.keeps_data() {
            // null://: operations go nowhere; nothing can be read back or journaled.
            if spec.verify != VerifyWhen::Never {
                self.unverifiable += 1;
                spec.verify = VerifyWhen::Never;
            }
            spec.journal = None;
        }
        if self.ctx.mode == Mode::Verify && (spec.verify != VerifyWhen::Only || spec.prefill) {
            let e = bad(
                "verify",
                "under `dgen-engine verify` a job only reads its region back: verify = \"only\", no prefill",
            );
            return Ok(Err(self.refuse_job(Refused::Spec(e))));
        }
        let name = spec.object.clone();
        match self.region_for(&spec) {
            Ok(()) => {}
            Err(Refused::Trap(t)) => return Err(t),
            Err(e) => return Ok(Err(self.refuse_job(e))),
        }
        let driver = match (spec.engine.as_deref(), ops::ring::available()) {
            (Some("psync"), _) | (None, false) => Driver::Psync,
            (_, true) => Driver::IoUring,
            (Some(_), false) => {
                let e = bad("engine", "io_uring is not available on this kernel; use \"psync\" or leave it out");
                return Ok(Err(self.refuse_job(Refused::Spec(e))));
            }
        };
        if driver == Driver::Psync && spec.jobs as u64 * spec.depth as u64 > MAX_PSYNC_THREADS {
            let e = bad(
                "depth",
                format!("psync runs a thread per operation in flight: jobs × depth is at most {MAX_PSYNC_THREADS}"),
            );
            return Ok(Err(self.refuse_job(Refused::Spec(e))));
        }
        let known = self.regions[&name].known;
        if spec.verify == VerifyWhen::Only && !known {
            let e = bad(
                "journal",
                format!(
                    "the generations of '{name}' are not known in this run: a read-back on its own needs the journal the \
                     runs that wrote it kept"
                ),
            );
            return Ok(Err(self.refuse_job(Refused::Spec(e))));
        }
        let prefill = spec.prefill && !known;
        let buffers = ops::buffer_bytes(&spec, prefill) as usize;
        self.charge(buffers, "the buffers of a job")?;
        let started = Instant::now();
        let state = &self.regions[&name];
        let env = JobEnv {
            region: &state.region,
            data: &state.data,
            map: &state.map,
            journal: state.journal.as_ref().map(|j| &j.0),
            cancel: &self.ctx.cancel,
            seed: self.ctx.seed,
            driver,
            prefill,
            check_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let result = ops::run(&spec, &env);
        self.blocked += started.elapsed();
        self.release(buffers);
        let outcome = match result {
            Ok(o) => o,
            Err(Error::Cancelled) => return Err(self.interrupted_trap()),
            Err(e) => return Ok(Err(self.refuse_job(Refused::Storage(e)))),
        };
        if outcome.prefill.is_some() && outcome.error.is_none() {
            let state = self.regions.get_mut(&name).expect("opened above");
            state.known = true;
            if !state.stamped {
                let n = state.opens.len();
                for (i, o) in state.opens.iter().enumerate() {
                    if let Err(e) = self.ctx.sink.stamp_region(o, &part_identity(&state.identity, i, n)) {
                        return Ok(Err(self.refuse_job(Refused::Storage(e))));
                    }
                }
                state.stamped = true;
            }
        }
        self.charge(PhaseOps::series_bytes(outcome.series.len()), "a job's series")?;
        let phase = self.phases.last_mut().expect("a phase");
        let at = started.saturating_duration_since(phase.started).as_secs_f64();
        let (w, r) = (&outcome.kinds[OpKind::Write.index()], &outcome.kinds[OpKind::Read.index()]);
        phase.counts.written += w.bytes + outcome.prefill.as_ref().map_or(0, |p| p.bytes);
        phase.counts.writes += w.ios + outcome.prefill.as_ref().map_or(0, |p| p.ios);
        phase.counts.read += r.bytes + outcome.check.as_ref().map_or(0, |c| c.bytes);
        phase.counts.reads += r.ios;
        phase.last_done = Some(Instant::now());
        phase.ops.get_or_insert_with(Default::default).add(&outcome, at);
        match outcome.error {
            None => {}
            Some(Error::Cancelled) => return Err(self.interrupted_trap()),
            Some(e) => return Ok(Err(self.refuse_job(Refused::Storage(e)))),
        }
        let ops = OpKind::ALL
            .iter()
            .filter_map(|&k| {
                let s = &outcome.kinds[k.index()];
                (s.ios > 0).then(|| {
                    // fio's percentile list holds every one the contract names.
                    let f = outcome.figures(k);
                    let c = &f.clat_ns;
                    wit::OpFigures {
                        op: k.name().into(),
                        total_ios: f.total_ios,
                        io_bytes: f.io_bytes,
                        iops: f.iops,
                        bw_bytes: f.bw_bytes,
                        lat_mean_ns: c.mean as u64,
                        lat_p50_ns: c.at(50.0),
                        lat_p90_ns: c.at(90.0),
                        lat_p99_ns: c.at(99.0),
                        lat_p999_ns: c.at(99.9),
                        lat_max_ns: c.max,
                    }
                })
            })
            .collect();
        Ok(Ok(wit::JobResult {
            ops,
            seconds: outcome.seconds,
            prefill_bytes: outcome.prefill.as_ref().map_or(0, |p| p.bytes),
            check: outcome.check.as_ref().map(|c| wit::RegionCheck {
                blocks: c.blocks,
                checked: c.checked,
                good: c.good,
                unknown: c.unknown,
                lost_writes: c.lost_writes,
                torn: c.torn,
                corrupt: c.corrupt,
            }),
        }))
    }

    /// Remembers why a job was refused (the run's error: a malformed job is the workload's, exit 2;
    /// storage, exit 3) and words it for the plugin.
    fn refuse_job(&mut self, why: Refused) -> String {
        match why {
            Refused::Spec(e) => {
                let text = e.to_string();
                self.job_error.get_or_insert(Error::Workload {
                    at: format!("a job of plugin '{}'", self.ctx.plugin),
                    message: text.clone(),
                });
                text
            }
            Refused::Storage(e) => {
                let text = self.tell("", &e);
                self.job_error.get_or_insert(e);
                text
            }
            Refused::Trap(t) => t.to_string(),
        }
    }

    /// Opens the job's region (once per run and object), checking the job against it.
    fn region_for(&mut self, spec: &JobSpec) -> Result<(), Refused> {
        let profile = spec.profile(&self.ctx.profile)?;
        if spec.object.is_empty() {
            return Err(bad("object", "missing: the file below the target root the job works on").into());
        }
        let gen = Generator::new(self.ctx.seed, profile.clone());
        let stream = stream_of(&spec.object, self.ctx.world.rank());
        if let Some(s) = self.regions.get(&spec.object) {
            if s.region.offset != spec.offset
                || s.region.files.len() as u64 != spec.objects
                || (spec.size != 0 && s.region.segment != spec.size)
                || s.data.generator().fingerprint() != gen.fingerprint()
            {
                return Err(bad(
                    "size",
                    format!(
                        "'{}' is already a region of {} bytes at offset {} in this run, with its data profile; a job on it \
                         takes the same size, offset and data",
                        spec.object, s.region.size, s.region.offset
                    ),
                )
                .into());
            }
            if s.journal.as_ref().map(|j| &j.1) != spec.journal.as_ref() {
                return Err(
                    bad("journal", format!("'{}' keeps its journal as it first did in this run", spec.object)).into()
                );
            }
            let unit = s.data.unit();
            return ops::check_against(spec, &s.region, unit, profile.extent()).map_err(Refused::Spec);
        }
        let end = spec.offset.checked_add(spec.size).ok_or_else(|| bad("size", "offset + size overflows"))?;
        let req = RegionRequest { end, create: spec.create && self.ctx.mode == Mode::Write, direct: spec.direct };
        let names = spec.names();
        if names.len() > 1 && spec.size == 0 {
            return Err(bad("objects", "a pool of objects needs their size").into());
        }
        if names.len() > 1 && self.ctx.sink.capabilities().engine == "dev" {
            return Err(bad("objects", "a device is one object: no pool of them").into());
        }
        // Buffered writes are confirmed by an fsync of their own file; a pool's files are synced
        // one at a time, so its journal needs O_DIRECT (acknowledged is on storage).
        let direct = spec.direct.unwrap_or(self.ctx.sink.capabilities().alignment > 1);
        if names.len() > 1 && spec.journal.is_some() && !direct {
            return Err(bad("journal", "a pool of objects keeps a journal only with O_DIRECT (direct = true)").into());
        }
        let mut opens = Vec::with_capacity(names.len());
        for name in &names {
            let open = self.ctx.sink.open_region(name, &req).map_err(Refused::Storage)?;
            if open.len < end {
                return Err(bad(
                    "size",
                    format!("the region ends at byte {end}, past the end of '{name}' ({} bytes)", open.len),
                )
                .into());
            }
            opens.push(open);
        }
        // Size 0: to the object's end (a device's whole).
        let segment = if spec.size == 0 { opens[0].len.saturating_sub(spec.offset) } else { spec.size };
        if segment == 0 {
            return Err(bad("size", format!("missing: '{}' is empty, so the region needs a size", spec.object)).into());
        }
        let size = segment * names.len() as u64;
        let mut files = Vec::with_capacity(opens.len());
        for o in &opens {
            files.push(Arc::new(o.file.try_clone().map_err(|e| Refused::Storage(Error::io(&o.path, e)))?));
        }
        let shown = if names.len() > 1 {
            format!("{} … ({} objects)", opens[0].path, names.len())
        } else {
            opens[0].path.clone()
        };
        let region = Region {
            files,
            names: opens.iter().map(|o| o.path.clone()).collect(),
            name: shown,
            offset: spec.offset,
            segment,
            size,
            direct: opens[0].direct,
            align: opens[0].align,
        };
        ops::check_against(spec, &region, profile.unit(), profile.extent())?;
        let blocks = size / profile.unit();
        // The map, and a journal's mapping (counted: it is memory the host holds for the plugin).
        let charged = blocks as usize * (1 + usize::from(spec.journal.is_some())) + std::mem::size_of::<RegionState>();
        self.charge(charged, "a region's generation map (one byte per block)").map_err(Refused::Trap)?;
        let identity = Identity::of_region(&gen, stream, size);
        // Where nothing can carry an identity (a device), a journal of this region is the word.
        let n = opens.len();
        let stamped = !self.ctx.sink.keeps_identity()
            || opens.iter().enumerate().all(|(i, o)| o.identity == Some(part_identity(&identity, i, n)));
        let data = RegionData::new(gen, stream, blocks);
        let (mut map, mut known, mut journal) = (GenMap::new(blocks, 0), false, None);
        if let Some(name) = &spec.journal {
            let key = JournalKey { region: identity, offset: spec.offset, size, unit: profile.unit() };
            let (j, found) = self.open_journal(name, spec, &key, blocks)?;
            if let Found::Map(m) = found {
                // A journal of this region, and the region is the one it describes.
                if stamped {
                    map = m;
                    known = true;
                }
            }
            journal = Some((j, name.clone()));
        }
        let state = RegionState { opens, region, data, map, journal, known, stamped, identity };
        self.regions.insert(spec.object.clone(), state);
        Ok(())
    }

    /// Opens (or makes) the journal file `name` of a region: the engine's own journal file, never
    /// the region itself or any other file.
    fn open_journal(
        &mut self,
        name: &str,
        spec: &JobSpec,
        key: &JournalKey,
        blocks: u64,
    ) -> Result<(Journal, Found), Refused> {
        if name == spec.object {
            return Err(bad("journal", "is the region's own file").into());
        }
        let write = self.ctx.mode == Mode::Write;
        let req = RegionRequest { end: 0, create: write, direct: Some(false) };
        let open = match self.ctx.sink.open_region(name, &req) {
            Ok(o) => o,
            Err(Error::NotFound { .. }) => {
                return Err(bad("journal", format!("there is no journal '{name}' below the target root")).into())
            }
            Err(e) => return Err(Refused::Storage(e)),
        };
        if open.identity.is_some_and(|i| i != Identity::journal() && i != Identity::incomplete()) {
            return Err(
                bad("journal", format!("'{name}' is not a journal (the engine wrote it as something else)")).into()
            );
        }
        let file = open.file.try_clone().map_err(|e| Refused::Storage(Error::io(&open.path, e)))?;
        let (j, found) =
            Journal::open(file, open.path.clone(), key, blocks, spec.journal_sync, !write).map_err(|e| match e {
                Error::NotFound { message, .. } => Refused::Spec(bad("journal", format!("'{name}' {message}"))),
                e => Refused::Storage(e),
            })?;
        if write {
            self.ctx.sink.stamp_region(&open, &Identity::journal()).map_err(Refused::Storage)?;
        }
        Ok((j, found))
    }
}
