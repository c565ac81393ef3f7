//! `--world-size N` without a launcher: ranks 0 … N − 1 of a workload run one after another in this
//! process, each with its own share and bytes as under MPI (so the files equal an MPI run's), then
//! merged into one report as rank 0 of an MPI run would. The ranks do not run at once, so the merged
//! times are each rank's own and stonewalling has no one to end a phase.

use crate::error::{Error, Result};
use crate::events::Events;
use crate::pipeline::executor::Observer;
use crate::plugin::host::Mode;
use crate::report::{CheckReport, Report, WorldReport};
use crate::run::{RunEnv, Session};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What ranks run one after another in one process made (`--world-size N` without a launcher).
pub struct InTurn {
    /// What to show: a failing rank's own lines (prefixed with its rank), then the run's header, the
    /// merged table and each failed check, by rank.
    pub lines: Vec<String>,
    /// The report: rank 0's, merged, with every rank's checks — or, when a rank failed, that rank's
    /// own.
    pub report: Report,
    pub code: u8,
    /// The rank that failed (storage, plugin fault, Ctrl-C) and why; the ranks after it did not run.
    pub failed: Option<(u32, Error)>,
    /// The ranks whose checks did not pass.
    pub not_passed: Vec<u32>,
}

impl Session {
    /// Runs ranks 0 … `n` − 1 one after another in this process, each with its own share and bytes
    /// as under MPI, then merges them; stops at the first rank that fails. The merged times are each
    /// rank's own: the ranks did not run at once. `screen` gives each rank its progress observer
    /// and event sink (it is dropped when the rank is done); `results` is where the report goes,
    /// for the plugin's `facts`. An error is one that stopped a rank before its run began.
    pub fn run_in_turn(
        &self,
        n: u32,
        cancel: &Arc<AtomicBool>,
        results: Option<&std::path::Path>,
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
            let env = RunEnv {
                quiet: true,
                cancel: cancel.clone(),
                events,
                world,
                results: results.map(Into::into),
                carried,
            };
            let outcome = self.run(&mut *observer, &env)?;
            drop(observer);
            let code = outcome.exit_code();
            if let Some(r) = &outcome.report {
                checks.extend(r.checks.iter().map(|c| CheckReport::of(c, Some(rank))));
            }
            let report = self.report(&outcome);
            if outcome.error.is_some() || code != 0 {
                lines.extend(report.lines().into_iter().map(|l| format!("rank {rank}: {l}")));
            }
            let summary = super::merge::summary(rank, &host, &outcome);
            carried += summary.held();
            summaries.push(summary);
            if let Some(e) = outcome.error.as_ref() {
                return Ok(InTurn { lines, report, code, failed: Some((rank, e.clone())), not_passed: Vec::new() });
            }
            if rank == 0 {
                // Its report lists every object again.
                carried += outcome.objects.iter().map(|o| 256 + o.name.len()).sum::<usize>();
                first = Some(report);
            }
        }
        let mut merged = WorldReport::merge(summaries);
        let code = merged.exit_code;
        lines.push(format!(
            "dgen-engine {}: workload '{}' with plugin {} {}, seed {}, {n} ranks one after another (each rank's \
             times are its own); target {}",
            if self.mode == Mode::Verify { "verify" } else { "run" },
            self.plan.name,
            crate::untrusted::sanitize(&self.plugin.meta.name, 100),
            crate::untrusted::sanitize(&self.plugin.meta.version, 50),
            self.seed,
            self.plan.uri
        ));
        if self.plan.stonewall {
            lines.push(
                "note: stonewall = true ends a phase among ranks running at once (under MPI); ranks in turn each \
                 ran their phases whole"
                    .into(),
            );
        }
        lines.extend(merged.lines());
        for c in checks.iter().filter(|c| !c.passed) {
            // Names and operators quoted, as JSON writes them.
            lines.push(format!(
                "  FAIL rank {} {} {} {} {}",
                c.rank.unwrap_or_default(),
                serde_json::Value::from(c.name.as_str()),
                serde_json::Value::from(c.observed),
                serde_json::Value::from(c.op.as_str()),
                serde_json::Value::from(c.threshold)
            ));
        }
        let not_passed = merged.not_passed();
        merged.checks = Some(checks);
        merged.ranks_in_turn = true;
        let mut report = first.expect("rank 0 ran");
        report.merge(merged);
        report.exit_code = code;
        Ok(InTurn { lines, report, code, failed: None, not_passed })
    }
}
