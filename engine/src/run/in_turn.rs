//! `--world-size N` without a launcher: ranks 0 … N − 1 of a workload run one after another in this
//! process, each with its own share and bytes as under MPI (so the files equal an MPI run's), then
//! merged into one report as rank 0 of an MPI run would. The ranks do not run at once, so the merged
//! times are each rank's own and stonewalling has no one to end a phase.

use crate::error::{Error, Result};
use crate::events::Events;
use crate::pipeline::executor::Observer;
use crate::plugin::host::Mode;
use crate::plugin::LoadedPlugin;
use crate::run::session::{execute, RunEnv};
use crate::run::workload::Plan;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What ranks run one after another in one process made (`--world-size N` without a launcher).
pub struct InTurn {
    /// What to show: a failing rank's own lines (prefixed with its rank), then the run's header, the
    /// merged table and each failed check, by rank.
    pub lines: Vec<String>,
    /// The JSON report, when asked for: rank 0's, merged, with every rank's checks — or, when a rank
    /// failed, that rank's own.
    pub json: Option<serde_json::Value>,
    pub code: u8,
    /// The rank that failed (storage, plugin fault, Ctrl-C) and why; the ranks after it did not run.
    pub failed: Option<(u32, Error)>,
    /// The ranks whose checks did not pass.
    pub not_passed: Vec<u32>,
}

/// Runs ranks 0 … `n` − 1 of `plan` one after another in this process, each with its own share and
/// bytes as under MPI, then merges them; stops at the first rank that fails. The merged times are
/// each rank's own: the ranks did not run at once. `screen` gives each rank its progress observer and
/// event sink (it is dropped when the rank is done). An error is one that stopped a rank before its
/// run began.
#[allow(clippy::too_many_arguments)]
pub fn run(
    plan: &Plan,
    plugin: &LoadedPlugin,
    seed: u64,
    mode: Mode,
    n: u32,
    cancel: &Arc<AtomicBool>,
    report: Option<&std::path::Path>,
    screen: &mut dyn FnMut(u32) -> (Box<dyn Observer + Send>, Arc<dyn Events>),
) -> Result<InTurn> {
    let mut summaries = Vec::new();
    let mut checks = Vec::new();
    let mut lines = Vec::new();
    let mut first = None;
    // What the ranks run so far keep for the merged report: the next rank's plugin is charged it.
    let mut carried = 0usize;
    for rank in 0..n {
        let world = Arc::new(crate::world::World::solo(rank, n));
        let host = world.host().to_string();
        let (mut observer, events) = screen(rank);
        let env =
            RunEnv { quiet: true, cancel: cancel.clone(), events, world, results: report.map(Into::into), carried };
        let outcome = execute(plan, plugin, seed, mode, &mut *observer, &env)?;
        drop(observer);
        let code = outcome.exit_code();
        if let Some(r) = &outcome.report {
            checks.extend(r.checks.iter().map(|c| {
                serde_json::json!({"rank": rank, "name": c.name, "observed": c.observed, "op": c.op,
                                   "threshold": c.threshold, "passed": c.passed})
            }));
        }
        if outcome.error.is_some() || code != 0 {
            lines.extend(crate::report::outcome_lines(plan, &outcome).into_iter().map(|l| format!("rank {rank}: {l}")));
        }
        let summary = crate::run::merge::RankSummary::of(rank, &host, &outcome);
        carried += summary.held();
        summaries.push(summary);
        if let Some(e) = outcome.error.as_ref() {
            let json = report.is_some().then(|| crate::report::outcome_json(plan, &outcome));
            return Ok(InTurn { lines, json, code, failed: Some((rank, e.clone())), not_passed: Vec::new() });
        }
        if rank == 0 && report.is_some() {
            first = Some(crate::report::outcome_json(plan, &outcome));
            // Its JSON lists every object again.
            carried += outcome.objects.iter().map(|o| 256 + o.name.len()).sum::<usize>();
        }
    }
    let merged = crate::run::merge::Merged::new(summaries);
    let code = merged.exit_code();
    lines.push(format!(
        "dgen-engine {}: workload '{}' with plugin {} {}, seed {seed}, {n} ranks one after another (each rank's \
         times are its own); target {}",
        if mode == Mode::Verify { "verify" } else { "run" },
        plan.name,
        crate::input::sanitize(&plugin.meta.name, 100),
        crate::input::sanitize(&plugin.meta.version, 50),
        plan.uri
    ));
    if plan.stonewall {
        lines.push(
            "note: stonewall = true ends a phase among ranks running at once (under MPI); ranks in turn each ran \
             their phases whole"
                .into(),
        );
    }
    lines.extend(merged.lines());
    for c in checks.iter().filter(|c| c["passed"] == false) {
        lines.push(format!("  FAIL rank {} {} {} {} {}", c["rank"], c["name"], c["observed"], c["op"], c["threshold"]));
    }
    let not_passed = merged.ranks.iter().filter(|r| r.exit_code != 0).map(|r| r.rank).collect();
    let json = report.is_some().then(|| {
        let mut json = merged.into_json(first.unwrap_or_default());
        if let Some(m) = json.as_object_mut() {
            m.insert("checks".into(), serde_json::json!(checks));
            m.insert("exit_code".into(), serde_json::json!(code));
            m.insert("ranks_in_turn".into(), serde_json::json!(true));
        }
        json
    });
    Ok(InTurn { lines, json, code, failed: None, not_passed })
}
