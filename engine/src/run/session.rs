//! A workload run: its plan, its plugin and its sink, wired together. [`Session`] is the one way a
//! workload is run — by the CLI (`run`, `verify`, a rank under a launcher), by ranks run in turn and
//! by the Python package — and [`Session::report`] the one way its outcome becomes a [`Report`].
//!
//! The plugin runs on the calling thread; the executor runs beside it on its own thread, taking each
//! committed object from a channel, so objects are written while the plugin goes on planning. When the
//! plugin returns, the job channel closes, the executor drains and the outcome is gathered: the
//! plugin's report, the run's statistics, and which error (if any) decides the exit code.

use crate::error::{Error, Result};
use crate::events::{Event, Events, Note};
use crate::generator::Generator;
use crate::pipeline::executor::{ExecConfig, Executor, ObjectResult, Observer, PipelineStats};
use crate::pipeline::verify::Verdict;
use crate::plugin::host::{HostContext, HostState, Mode};
use crate::plugin::{build, LoadedPlugin, PluginMeta, Report as PluginReport, RunConfig};
use crate::pool::BufferPool;
use crate::report::{self, Report};
use crate::run::workload::{Plan, PluginSource};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Builds (if a crate) and loads the workload's plugin, checking a pinned hash.
pub fn load_plugin(plan: &Plan, quiet: bool, events: &dyn Events) -> Result<LoadedPlugin> {
    let cache = build::cache_dir().join("compiled");
    match &plan.plugin {
        PluginSource::Crate(dir) => crate::plugin::load(&build::build(dir, None, quiet, events)?, Some(&cache)),
        PluginSource::Wasm { path, sha256 } => crate::plugin::load_pinned(path, sha256.as_deref(), Some(&cache)),
    }
}

/// One workload, ready to run: its checked plan, its plugin (built and loaded), the seed and whether
/// commits write or verify.
pub struct Session {
    pub plan: Plan,
    pub plugin: LoadedPlugin,
    pub seed: u64,
    pub mode: Mode,
}

impl Session {
    /// Loads a workload file (with `--set` overrides) and its plugin; the seed is `seed`, else the
    /// workload's, else drawn at random. `quiet` and `events` are for building a plugin crate.
    pub fn open(
        workload: &Path,
        sets: &[String],
        seed: Option<u64>,
        mode: Mode,
        quiet: bool,
        events: &dyn Events,
    ) -> Result<Session> {
        let plan = Plan::load(workload, sets)?;
        let plugin = load_plugin(&plan, quiet, events)?;
        super::params::check(&plan, &plugin.meta)?;
        let seed = seed.or(plan.seed).unwrap_or_else(super::random_seed);
        Ok(Session { plan, plugin, seed, mode })
    }

    /// Runs (or verifies) this process's rank of the workload (the only one, alone).
    pub fn run(&self, observer: &mut (dyn Observer + Send), env: &RunEnv) -> Result<Outcome> {
        execute(&self.plan, &self.plugin, self.seed, self.mode, observer, env)
    }

    /// A run's outcome as its report: what the table shows and the JSON says.
    pub fn report(&self, o: &Outcome) -> Report {
        use crate::report::{
            CheckReport, Metric, ObjectReport, PhaseReport, PipelineReport, PluginReport as Plugin, ReadFailure,
            RunReport, VerifyReport, View,
        };
        let plan = &self.plan;
        let bytes: u64 = o.objects.iter().map(|r| r.size).sum();
        let run_start = o.phases.first().map(|p| p.started);
        // With one phase that wrote, the run's figure is that phase's (the same span, not the
        // plugin's start-up before it); over several, the span from the start holds the others.
        let seconds = match o.phases.as_slice() {
            [p] if p.counts.writes > 0 => p.seconds(),
            _ => o.elapsed.as_secs_f64(),
        };
        let run = RunReport {
            workload: plan.name.clone(),
            plugin: Plugin {
                name: o.plugin.name.clone(),
                version: o.plugin.version.clone(),
                sha256: o.plugin_sha256.clone(),
                contract: o.plugin.contract.clone(),
            },
            seed: o.seed,
            target: plan.uri.clone(),
            data: report::data::DataReport::of(&plan.profile),
            bytes,
            objects: o.objects.len(),
            seconds,
            run_seconds: o.wall.as_secs_f64(),
            gbps: report::gbps_of(bytes, seconds),
            engine: o.engine,
            pipeline: o.stats.as_ref().map(|s| PipelineReport::of(s, o.write_size)),
            object_list: o.objects.iter().map(ObjectReport::of).collect(),
            phases: o.phases.iter().map(|p| PhaseReport::of(p, run_start)).collect(),
            read_failures: o.read_failure_count,
            read_failure_list: o
                .read_failures
                .iter()
                .map(|(name, offset, v)| ReadFailure { name: name.clone(), offset: *offset, verdict: v.to_string() })
                .collect(),
            verify: o
                .verdicts
                .iter()
                .map(|(name, v)| VerifyReport {
                    name: name.clone(),
                    identical: v.is_identical(),
                    verdict: v.to_string(),
                })
                .collect(),
            metrics: o.metrics.iter().map(|(name, value)| Metric { name: name.clone(), value: *value }).collect(),
            checks: o.report.as_ref().map(|r| r.checks.iter().map(|c| CheckReport::of(c, None)).collect()),
            summary: o.report.as_ref().map(|r| r.summary.clone()),
            world: None,
            view: View { profile: plan.profile.to_string(), threads: plan.threads, readers: plan.concurrency.max(1) },
        };
        Report {
            file: plan.file.display().to_string(),
            mode: if self.mode == Mode::Verify { "verify" } else { "run" },
            run: Some(run),
            notes: o.notes.clone(),
            error: None,
            error_detail: None,
            error_kind: None,
            exit_code: 0,
        }
        .with_error(o.error.as_ref(), o.exit_code())
    }
}

/// What a run (or a verify) produced.
pub struct Outcome {
    pub plugin: PluginMeta,
    pub plugin_sha256: String,
    pub seed: u64,
    pub mode: Mode,
    /// The plugin's report, when it returned one.
    pub report: Option<PluginReport>,
    /// The error that decides the exit code, if any (storage, plugin fault, Ctrl-C).
    pub error: Option<Error>,
    pub stats: Option<PipelineStats>,
    pub objects: Vec<ObjectResult>,
    pub verdicts: Vec<(String, Verdict)>,
    /// The run's phases, in order.
    pub phases: Vec<crate::pipeline::phase::Phase>,
    /// Reads whose check failed (the first ones: name, offset of the read, what was found), and how
    /// many in all.
    pub read_failures: Vec<(String, u64, Verdict)>,
    pub read_failure_count: u64,
    pub metrics: Vec<(String, f64)>,
    /// From the start (pool ready) to the last object finished: what the throughput is over.
    pub elapsed: Duration,
    /// The whole run, read-backs and the plugin's last words included.
    pub wall: Duration,
    pub engine: &'static str,
    pub write_size: usize,
    /// What the sink had to say at the end (an upload it could not abort, the concurrency it chose).
    pub notes: Vec<Note>,
}

impl Outcome {
    /// 0 every check passed (and every object verified), 1 a check failed, else the error's code.
    pub fn exit_code(&self) -> u8 {
        if let Some(e) = &self.error {
            return e.exit_code();
        }
        let checks_ok = self.report.as_ref().is_some_and(|r| r.checks.iter().all(|c| c.passed));
        let regions_ok =
            self.phases.iter().all(|p| p.ops.as_ref().and_then(|o| o.check.as_ref()).is_none_or(|c| c.failed() == 0));
        let verified_ok =
            self.verdicts.iter().all(|(_, v)| v.is_identical()) && self.read_failure_count == 0 && regions_ok;
        if checks_ok && verified_ok {
            0
        } else {
            1
        }
    }
}

/// What a run shares with its caller: whether to be quiet, the Ctrl-C flag, where events go.
pub struct RunEnv {
    pub quiet: bool,
    pub cancel: Arc<AtomicBool>,
    pub events: Arc<dyn Events>,
    /// This process's rank among the run's, and how the ranks reach each other.
    pub world: Arc<crate::world::World>,
    /// Where the run's report goes (`--json-report`), for the plugin's `facts`.
    pub results: Option<std::path::PathBuf>,
    /// Bytes already held for this plugin in this process before the run starts (what earlier
    /// ranks run in turn left for the merged report): charged to its memory limit from the start.
    pub carried: usize,
}

impl RunEnv {
    /// A run alone in its process (rank 0 of 1), quiet, telling `events` what it has to say.
    pub fn alone(cancel: Arc<AtomicBool>, events: Arc<dyn Events>) -> RunEnv {
        RunEnv {
            quiet: true,
            cancel,
            events,
            world: Arc::new(crate::world::World::solo(0, 1)),
            results: None,
            carried: 0,
        }
    }
}

/// Runs (or verifies) a workload with a loaded plugin.
pub fn execute(
    plan: &Plan,
    plugin: &LoadedPlugin,
    seed: u64,
    mode: Mode,
    observer: &mut (dyn Observer + Send),
    env: &RunEnv,
) -> Result<Outcome> {
    let RunEnv { quiet, cancel, events, world, results, carried } = env;
    let (rank, world_size) = (world.rank(), world.size());
    let (quiet, cancel) = (*quiet, cancel.clone());
    let (sink, notes) = plan.target.open()?;
    if mode == Mode::Verify && !sink.keeps_data() {
        return Err(Error::InvalidValue {
            key: "target.uri",
            value: plan.uri.clone(),
            reason: "keeps nothing: `verify` reads back what a run wrote, and nothing is kept there".into(),
        });
    }
    super::place::guard_root(plan, plugin)?;
    if !quiet {
        for n in notes {
            events.emit(Event::Note(n));
        }
    }
    let config =
        RunConfig { seed, params: plan.params_json.clone(), verify_only: mode == Mode::Verify, rank, world_size };
    let caps = sink.capabilities();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
    let cfg = ExecConfig {
        buffer_size: plan.buffer_size,
        buffers: plan.buffers,
        threads: plan.threads,
        open_objects: plan.concurrency,
        crc: true,
    };
    let gen = Generator::new(seed, plan.profile.clone()).for_rank(rank.into(), world_size.into());
    // Stonewalling needs ranks running at once; alone (or in turn) each phase ends when it ends.
    let stonewall = plan.stonewall && world.is_mpi() && world_size > 1;
    let mut outcome = Outcome {
        plugin: plugin.meta.clone(),
        plugin_sha256: plugin.sha256.clone(),
        seed,
        mode,
        report: None,
        error: None,
        stats: None,
        objects: Vec::new(),
        verdicts: Vec::new(),
        phases: Vec::new(),
        read_failures: Vec::new(),
        read_failure_count: 0,
        metrics: Vec::new(),
        elapsed: Duration::ZERO,
        wall: Duration::ZERO,
        engine: caps.engine,
        write_size: 0,
        notes: Vec::new(),
    };
    let make_ctx = |pool: BufferPool, read_pool: BufferPool, jobs, started, split| HostContext {
        plugin: crate::untrusted::sanitize(&plugin.meta.name, 100),
        params_json: plan.params_json.clone(),
        seed,
        profile: plan.profile.clone(),
        mode,
        sink: sink.clone(),
        pool,
        read_pool,
        read_depth: plan.concurrency.max(1),
        jobs,
        done: done_rx.clone(),
        cancel: cancel.clone(),
        quiet,
        events: events.clone(),
        started,
        split,
        world: world.clone(),
        stonewall,
        facts: super::place::facts(&plan.target, world, results.as_deref()),
    };
    let started;
    let (state, result, exec_result) = match mode {
        Mode::Write => {
            let exec = Executor::new(sink.as_ref(), gen, cfg)?;
            let exec = if stonewall { exec.with_wall(world.wall().clone()) } else { exec };
            outcome.write_size = exec.write_size();
            // Read-backs for the plugin's own `verify` calls use two buffers of their own.
            let verify_pool = crate::pipeline::verify::comparison_pool(&caps, plan.buffer_size)?;
            // Like `gen`, the clock starts once the pool is allocated and pre-faulted — on every
            // rank at once.
            world.barrier(&cancel)?;
            started = Instant::now();
            let read_pool = exec.pool().clone();
            let mut state = HostState::new(
                make_ctx(verify_pool, read_pool, Some(jobs_tx), started, exec.split()),
                plan.limits.clone(),
            );
            state.carry(*carried);
            std::thread::scope(|s| {
                let cancel2 = cancel.clone();
                let exec = &exec;
                let handle = s.spawn(move || exec.run_channel(jobs_rx, Some(done_tx), observer, &cancel2));
                let (mut state, result) = plugin.run(state, config);
                state.end_intake();
                let exec_result = handle.join().unwrap_or_else(|_| Err(Error::resource("the executor panicked")));
                (state, result, Some(exec_result))
            })
        }
        Mode::Verify => {
            drop((jobs_tx, jobs_rx, done_tx));
            let pool = crate::pipeline::verify::comparison_pool(&caps, plan.buffer_size)?;
            let size = pool.buffer_size();
            let read_pool = BufferPool::new(plan.buffers, size, caps.alignment).map_err(Error::pool)?;
            world.barrier(&cancel)?;
            started = Instant::now();
            let mut state =
                HostState::new(make_ctx(pool, read_pool, None, started, Arc::default()), plan.limits.clone());
            state.carry(*carried);
            let (mut state, result) = plugin.run(state, config);
            state.end_intake();
            (state, result, None)
        }
    };
    settle(&mut outcome, state, result, exec_result, started, sink.as_ref(), plugin);
    Ok(outcome)
}

/// Fills a run's outcome from what the host, the executor and the plugin ended with.
fn settle(
    o: &mut Outcome,
    state: HostState,
    result: Result<std::result::Result<PluginReport, String>>,
    exec_result: Option<Result<PipelineStats>>,
    started: Instant,
    sink: &dyn crate::sink::Sink,
    plugin: &LoadedPlugin,
) {
    o.wall = started.elapsed();
    o.notes = sink.notes();
    let host = state.into_outcome();
    o.notes.extend(host.log_summary);
    if host.unverifiable > 0 {
        o.notes.push(Note::remark(format!(
            "note: the target keeps nothing (null://), so verifying is not possible there: {} read-backs the \
             plugin asked for were not done (they are neither passed nor failed)",
            host.unverifiable
        )));
    }
    o.metrics = host.metrics;
    o.verdicts = host.verdicts;
    o.objects = host.finished;
    o.phases = host.phases;
    o.read_failures = host.read_failures;
    o.read_failure_count = host.read_failure_count;
    o.elapsed = crate::plugin::host::last_finish(&o.objects, started);
    // Storage errors and Ctrl-C come first: they explain whatever the plugin saw afterwards.
    match exec_result {
        Some(Ok(stats)) => {
            o.stats = Some(stats);
        }
        Some(Err(e)) => o.error = Some(e),
        None => {}
    }
    if let Some(e) = host.error {
        o.error.get_or_insert(e);
    }
    match result {
        Ok(Ok(report)) => o.report = Some(report),
        Ok(Err(message)) => {
            o.error.get_or_insert(Error::plugin(plugin.label(), format!("stopped with an error: {message}")));
        }
        Err(e) => {
            o.error.get_or_insert(e);
        }
    }
}
