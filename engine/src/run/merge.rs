//! What every rank does once its own run is over, and rank 0's merge: each rank sends rank 0 a
//! [`RankSummary`] of its outcome (its bytes, objects, and the figures of its phases with their
//! latency histograms as exact pairs), and rank 0 merges them into a [`WorldReport`]
//! (see [`crate::report::ranks`] for what the merged figures mean).

use crate::error::{Error, Result};
use crate::report::phase::PhaseFigures;
use crate::report::ranks::Coordination;
use crate::report::{ObjectReport, RankSummary, WorldReport};
use crate::run::Outcome;
use crate::world::World;
use std::sync::atomic::AtomicBool;

/// What rank `rank` on `host` tells rank 0 of its run.
pub fn summary(rank: u32, host: &str, o: &Outcome) -> RankSummary {
    let run_start = o.phases.first().map(|p| p.started);
    RankSummary {
        rank,
        host: host.to_string(),
        bytes: o.objects.iter().map(|r| r.size).sum(),
        seconds: o.elapsed.as_secs_f64(),
        run_seconds: o.wall.as_secs_f64(),
        exit_code: o.exit_code(),
        error: o.error.as_ref().map(|e| e.to_string()),
        objects: o.objects.iter().map(ObjectReport::of).collect(),
        phases: o.phases.iter().map(|p| PhaseFigures::of(p, run_start)).collect(),
    }
}

/// What every rank does once its own run is over. A rank that finished waits for the others (a
/// rank failing late is heard there); a run stopped by a peer's failure takes that failure as its
/// error; a rank that failed tells the others. Then, when no rank failed, every rank's summary
/// goes to rank 0, which gets them merged (`None` elsewhere, alone, or after a failure).
pub fn after_run(world: &World, outcome: &mut Outcome, cancel: &AtomicBool) -> Result<Option<WorldReport>> {
    if outcome.error.is_none() {
        if let Err(e) = world.barrier(cancel) {
            outcome.error = Some(e);
        }
    }
    if matches!(outcome.error, Some(Error::Cancelled)) {
        if let Some(f) = world.peer_failure() {
            outcome.error = Some(f.error());
        }
    }
    if let Some(e) = &outcome.error {
        world.fail(outcome.exit_code(), &e.to_string());
        return Ok(None);
    }
    if world.size() == 1 {
        return Ok(None);
    }
    let mine = summary(world.rank(), world.host(), outcome);
    let Some(all) = world.gather(mine.to_bytes())? else {
        return Ok(None);
    };
    let gathered_bytes = all.iter().map(Vec::len).sum();
    let t = std::time::Instant::now();
    let mut merged = WorldReport::merge(all.iter().filter_map(|b| RankSummary::from_bytes(b)).collect());
    let c = world.costs();
    merged.coordination = Some(Coordination {
        barriers: c.barriers,
        barrier_s: c.barrier_wait.as_secs_f64(),
        gather_s: c.gather.as_secs_f64(),
        gathered_bytes,
        merge_s: t.elapsed().as_secs_f64(),
    });
    Ok(Some(merged))
}
