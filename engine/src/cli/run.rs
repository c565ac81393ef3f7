//! `dgen-engine run` and `verify`: a [`Session`] run as this process's rank (alone, `--rank R`, or
//! under a launcher, rank 0 merging every rank's figures), or ranks 0 … N − 1 in turn. The table
//! goes to stdout (to stderr when the JSON report does), progress, notes and errors to stderr.

use super::args::RunArgs;
use super::{install_cancel, lib_error, write_report, Failure};
use crate::terminal::{say, Progress, Terminal};
use dgen_engine::events::Level;
use dgen_engine::plugin::host::Mode;
use dgen_engine::report::Report;
use dgen_engine::run::{RunEnv, Session};
use dgen_engine::world::World;
use dgen_engine::Error;
use std::sync::Arc;

/// How long rank 0 of a failed run waits for the other ranks to abort their open objects before it
/// ends the job.
const FAILED_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub fn run(args: RunArgs, mode: Mode) -> Result<(), Failure> {
    if let (None, Some(n)) = (args.rank, args.world_size) {
        return run_in_turn(args, mode, n);
    }
    let early = early_failure(&args, mode);
    let cancel = install_cancel();
    let world = Arc::new(World::for_run(args.rank, args.world_size, cancel.clone()).map_err(lib_error)?);
    // Rank 0 of an MPI run speaks for all; a rank run alone (`--rank`) speaks for itself.
    let root = world.rank() == 0 || !world.is_mpi();
    // Under a launcher only rank 0 talks; the others print their errors only.
    let quiet = args.quiet || !root;
    // A rank that cannot start tells the others, so none of them waits at the first barrier.
    let early = |e: Error| {
        world.fail(e.exit_code(), &e.to_string());
        world.end_failed(e.exit_code(), FAILED_GRACE);
        early(e)
    };
    if root {
        report_writable(&args)?;
    }
    let session =
        Session::open(&args.workload, &args.sets, args.seed, mode, quiet, &Terminal::plain()).map_err(early)?;
    let mut progress = Progress::new(0, !quiet && mode == Mode::Write);
    let env = RunEnv {
        quiet,
        cancel: cancel.clone(),
        events: Arc::new(progress.terminal()),
        world: world.clone(),
        results: args.json_report.clone(),
        carried: 0,
    };
    let outcome = session.run(&mut progress, &env);
    progress.finish();
    let mut outcome = outcome.map_err(early)?;
    let merged = dgen_engine::run::merge::after_run(&world, &mut outcome, &cancel).map_err(lib_error)?;
    let own_code = outcome.exit_code();
    let faulted = outcome.error.is_some();
    let mut report = session.report(&outcome);
    let mut lines = report.lines();
    if let Some(e) = outcome.error.as_ref().filter(|_| world.is_mpi() && !root) {
        lines = vec![format!("rank {}: error: {e}", world.rank())];
    }
    let mut others_failed = Vec::new();
    if let Some(w) = merged {
        others_failed = w.not_passed();
        lines.extend(w.lines());
        report.merge(w);
    }
    let code = report.exit_code;
    if (!quiet || code != 0) && (root || faulted) {
        show(&lines, &args);
    } else if root {
        // Warnings (an upload that could not be aborted) are printed even when quiet.
        for n in report.notes.iter().filter(|n| n.level == Level::Warning) {
            say(&n.text);
        }
    }
    if let (Some(path), true) = (&args.json_report, root) {
        write_report(path, &report)?;
    }
    if faulted {
        // Every rank has aborted its open objects by now; rank 0 waits for them, then ends the job.
        world.end_failed(code, FAILED_GRACE);
    } else {
        world.finish();
    }
    if outcome.error.is_none() && own_code == 0 && code != 0 {
        let ranks: Vec<String> = others_failed.iter().map(u32::to_string).collect();
        return Err(Failure { code, error: anyhow::anyhow!("rank {} did not pass its checks", ranks.join(", ")) });
    }
    match (outcome.error, code) {
        (Some(e), _) => {
            if args.verbose {
                for l in e.detail().into_iter().flat_map(str::lines) {
                    say(&format!("detail: {l}"));
                }
                for c in e.causes() {
                    say(&format!("caused by: {c}"));
                }
            }
            Err(lib_error(e))
        }
        (None, 0) => Ok(()),
        (None, code) => {
            let failed = report.failed_checks();
            let what = if failed.is_empty() {
                "some objects differ from what was written".to_string()
            } else {
                format!("check {} failed", failed.join(", "))
            };
            Err(Failure { code, error: anyhow::anyhow!("{what}") })
        }
    }
}

/// `--world-size N` without `--rank`: the library runs ranks 0 … N − 1 one after another in this
/// process and merges them; this prints and saves what it made.
fn run_in_turn(args: RunArgs, mode: Mode, n: u32) -> Result<(), Failure> {
    let early = early_failure(&args, mode);
    if dgen_engine::world::launcher_world_size().is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--world-size is for runs without a launcher; under mpirun/srun the launcher assigns the ranks"
        )));
    }
    report_writable(&args)?;
    let session =
        Session::open(&args.workload, &args.sets, args.seed, mode, args.quiet, &Terminal::plain()).map_err(early)?;
    let cancel = install_cancel();
    let bar = !args.quiet && mode == Mode::Write;
    let mut screen = |_rank: u32| {
        let progress = RankProgress(Progress::new(0, bar));
        let events: Arc<dyn dgen_engine::events::Events> = Arc::new(progress.0.terminal());
        (Box::new(progress) as Box<dyn dgen_engine::pipeline::executor::Observer + Send>, events)
    };
    let turns = session.run_in_turn(n, &cancel, args.json_report.as_deref(), &mut screen).map_err(early)?;
    if !args.quiet || turns.code != 0 {
        show(&turns.lines, &args);
    }
    if let Some(path) = &args.json_report {
        write_report(path, &turns.report)?;
    }
    if let Some((rank, e)) = turns.failed {
        return Err(Failure { code: turns.code, error: anyhow::anyhow!("rank {rank} of {n} failed: {e}") });
    }
    match turns.code {
        0 => Ok(()),
        code => {
            let ranks: Vec<String> = turns.not_passed.iter().map(u32::to_string).collect();
            Err(Failure { code, error: anyhow::anyhow!("rank {} did not pass", ranks.join(", ")) })
        }
    }
}

/// The result table: on stdout, so `run … > result.txt` keeps it; on stderr when the JSON report
/// goes to stdout, which then carries the JSON alone.
fn show(lines: &[String], args: &RunArgs) {
    let json_on_stdout = args.json_report.as_deref().is_some_and(crate::terminal::is_stdout);
    for l in lines {
        if json_on_stdout {
            say(l);
        } else {
            crate::terminal::result(l);
        }
    }
}

/// Refuses, before anything runs, a JSON report that could not be written at the end: its file is
/// opened for writing (created when missing) now.
fn report_writable(args: &RunArgs) -> Result<(), Failure> {
    let Some(path) = &args.json_report else { return Ok(()) };
    if crate::terminal::is_stdout(path) {
        return Ok(());
    }
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path).map(drop).map_err(|e| {
        Failure::io(anyhow::anyhow!("cannot write the JSON report {}: {e}; nothing was run", path.display()))
    })
}

/// A rank's progress line, ended when the rank is done.
struct RankProgress(Progress);

impl dgen_engine::pipeline::executor::Observer for RankProgress {
    fn progress(&mut self, bytes: u64) {
        dgen_engine::pipeline::executor::Observer::progress(&mut self.0, bytes);
    }
}

impl Drop for RankProgress {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// How a failure before the run ends: with a JSON report of it when one was asked for.
fn early_failure(args: &RunArgs, mode: Mode) -> impl Fn(Error) -> Failure + Copy + '_ {
    move |e: Error| {
        if let Some(path) = &args.json_report {
            let _ = write_report(path, &Report::failure(&args.workload, mode == Mode::Verify, &e));
        }
        lib_error(e)
    }
}
