//! One report for a run on many ranks: each rank sends rank 0 a [`RankSummary`] of its outcome
//! (its bytes, objects, phases and their latency histograms as exact (value, count) pairs), and
//! rank 0 merges them — sums, histograms added bucket by bucket (not averaged percentiles), and the
//! two throughputs people quote:
//!
//! - **wall**: all ranks' bytes over the time from the first rank's start to the last rank's end;
//! - **slowest rank** (MLPerf Storage's): all ranks' bytes over the longest single rank's duration.
//!
//! Ranks start every phase at a barrier, and each rank measures its phases from the barrier the run
//! started at, so the offsets of different hosts' clocks never enter the figures.

use crate::error::{Error, Result};
use crate::pipeline::phase::Phase;
use crate::run::session::Outcome;
use crate::world::{Costs, World};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::AtomicBool;

/// A latency histogram as (value µs, count) pairs: exact to merge.
type Pairs = Vec<(u64, u64)>;

fn pairs(h: &Histogram<u64>) -> Pairs {
    h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
}

fn histogram(p: &[(u64, u64)]) -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
    for &(v, n) in p {
        let _ = h.record_n(v.clamp(1, 3_600_000_000), n);
    }
    h
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseSummary {
    pub name: String,
    /// From the run's start (the barrier it began at) to the phase's start, and its duration.
    pub start_s: f64,
    pub seconds: f64,
    pub written: u64,
    pub writes: u64,
    pub read: u64,
    pub reads: u64,
    pub meta_ops: u64,
    pub read_failures: u64,
    pub latency: Pairs,
    /// Bytes done per time bucket from its start.
    pub timeline: crate::pipeline::phase::Timeline,
    /// Stonewalling: the rank whose finish ended this rank's phase, and what it cut here.
    #[serde(default)]
    pub stonewalled_by: Option<u32>,
    #[serde(default)]
    pub cut_objects: u64,
    #[serde(default)]
    pub cut_reads: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectSummary {
    pub name: String,
    pub size: u64,
    pub crc32c: Option<u32>,
    pub latency_us: u64,
}

/// What one rank tells rank 0 at the end of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RankSummary {
    pub rank: u32,
    pub host: String,
    pub bytes: u64,
    /// To its last object finished, and its whole run.
    pub seconds: f64,
    pub run_seconds: f64,
    pub exit_code: u8,
    pub error: Option<String>,
    pub objects: Vec<ObjectSummary>,
    pub phases: Vec<PhaseSummary>,
}

impl RankSummary {
    pub fn of(rank: u32, host: &str, o: &Outcome) -> RankSummary {
        let run_start = o.phases.first().map(|p| p.started);
        let phase = |p: &Phase| PhaseSummary {
            name: p.name.clone(),
            start_s: run_start.map_or(0.0, |s| p.started.saturating_duration_since(s).as_secs_f64()),
            seconds: p.seconds(),
            written: p.written,
            writes: p.writes,
            read: p.read,
            reads: p.reads,
            meta_ops: p.meta_ops,
            read_failures: p.read_failures,
            latency: pairs(&p.latency),
            timeline: p.timeline.clone(),
            stonewalled_by: p.stonewalled.map(|(_, by)| by),
            cut_objects: p.cut_objects,
            cut_reads: p.cut_reads,
        };
        RankSummary {
            rank,
            host: host.to_string(),
            bytes: o.objects.iter().map(|r| r.size).sum(),
            seconds: o.elapsed.as_secs_f64(),
            run_seconds: o.wall.as_secs_f64(),
            exit_code: o.exit_code(),
            error: o.error.as_ref().map(|e| e.to_string()),
            objects: o
                .objects
                .iter()
                .map(|r| ObjectSummary {
                    name: r.name.clone(),
                    size: r.size,
                    crc32c: r.crc32c,
                    latency_us: r.latency.as_micros() as u64,
                })
                .collect(),
            phases: o.phases.iter().map(phase).collect(),
        }
    }

    /// What this summary holds in memory, bytes (its records with their names, and the
    /// allocator's share): what a later rank run in turn is charged for it.
    pub fn held(&self) -> usize {
        let objects: usize =
            self.objects.iter().map(|o| std::mem::size_of::<ObjectSummary>() + o.name.len() + 32).sum();
        let phases: usize = self
            .phases
            .iter()
            .map(|p| std::mem::size_of::<PhaseSummary>() + p.name.len() + p.latency.len() * 16 + 1024)
            .sum();
        std::mem::size_of::<RankSummary>() + self.host.len() + objects + phases
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Option<RankSummary> {
        serde_json::from_slice(b).ok()
    }

    fn gbps(&self) -> f64 {
        self.bytes as f64 / self.seconds.max(1e-9) / 1e9
    }

    fn object_latency(&self) -> Histogram<u64> {
        histogram(&self.objects.iter().map(|o| (o.latency_us, 1)).collect::<Vec<_>>())
    }
}

/// One phase over all ranks.
pub struct MergedPhase {
    pub name: String,
    pub written: u64,
    pub writes: u64,
    pub read: u64,
    pub reads: u64,
    pub meta_ops: u64,
    pub read_failures: u64,
    /// First start to last end, and the longest rank's duration.
    pub wall_s: f64,
    pub slowest_s: f64,
    /// Stonewalled, as IOR's `-D` reports: the first rank to finish the phase ends it for the
    /// figures — the bytes every rank had done by then, over that time.
    pub stonewall_s: f64,
    pub stonewall_bytes: u64,
    /// Enforced stonewalling (`stonewall = true`): the rank that finished first and ended the phase
    /// for the others, and what it cut on them.
    pub stonewalled_by: Option<u32>,
    pub cut_objects: u64,
    pub cut_reads: u64,
    pub latency: Histogram<u64>,
}

impl MergedPhase {
    pub fn bytes(&self) -> u64 {
        self.written + self.read
    }
    pub fn ops(&self) -> u64 {
        self.writes + self.reads + self.meta_ops
    }
    pub fn gbps(&self) -> f64 {
        self.bytes() as f64 / self.wall_s.max(1e-9) / 1e9
    }
    pub fn slowest_gbps(&self) -> f64 {
        self.bytes() as f64 / self.slowest_s.max(1e-9) / 1e9
    }
    pub fn stonewall_gbps(&self) -> f64 {
        self.stonewall_bytes as f64 / self.stonewall_s.max(1e-9) / 1e9
    }
}

/// All ranks' figures, merged.
pub struct Merged {
    pub ranks: Vec<RankSummary>,
    pub phases: Vec<MergedPhase>,
}

fn q(h: &Histogram<u64>, x: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(x)
    }
}

impl Merged {
    /// Merges the ranks' summaries (in rank order). Phases are matched by position: every rank runs
    /// the same plugin, which names the same phases in the same order.
    pub fn new(mut ranks: Vec<RankSummary>) -> Merged {
        ranks.sort_by_key(|r| r.rank);
        let n = ranks.iter().map(|r| r.phases.len()).max().unwrap_or(0);
        let mut phases = Vec::new();
        for i in 0..n {
            let of: Vec<&PhaseSummary> = ranks.iter().filter_map(|r| r.phases.get(i)).collect();
            let mut latency = histogram(&[]);
            for p in &of {
                let _ = latency.add(histogram(&p.latency));
            }
            let first = of.iter().map(|p| p.start_s).fold(f64::INFINITY, f64::min);
            let last = of.iter().map(|p| p.start_s + p.seconds).fold(0.0, f64::max);
            let sum = |f: fn(&PhaseSummary) -> u64| of.iter().map(|p| f(p)).sum::<u64>();
            let (written, read) = (sum(|p| p.written), sum(|p| p.read));
            let (writes, reads, meta_ops) = (sum(|p| p.writes), sum(|p| p.reads), sum(|p| p.meta_ops));
            // The first rank done with its share (among those that had one) ends the stonewalled window.
            let busy: Vec<&&PhaseSummary> = of.iter().filter(|p| p.written + p.read > 0).collect();
            let stonewall_s = busy.iter().map(|p| p.seconds).fold(f64::INFINITY, f64::min);
            let stonewall_s = if stonewall_s.is_finite() { stonewall_s } else { 0.0 };
            let stonewall_bytes = busy.iter().map(|p| p.timeline.by(stonewall_s).min(p.written + p.read)).sum();
            phases.push(MergedPhase {
                name: of[0].name.clone(),
                written,
                writes,
                read,
                reads,
                meta_ops,
                read_failures: sum(|p| p.read_failures),
                wall_s: (last - first).max(0.0),
                slowest_s: of.iter().map(|p| p.seconds).fold(0.0, f64::max),
                stonewall_s,
                stonewall_bytes,
                stonewalled_by: of.iter().find_map(|p| p.stonewalled_by),
                cut_objects: sum(|p| p.cut_objects),
                cut_reads: sum(|p| p.cut_reads),
                latency,
            });
        }
        Merged { ranks, phases }
    }

    pub fn bytes(&self) -> u64 {
        self.ranks.iter().map(|r| r.bytes).sum()
    }

    pub fn objects(&self) -> usize {
        self.ranks.iter().map(|r| r.objects.len()).sum()
    }

    /// Every rank's write time starts at the run's barrier: the longest is the wall time.
    pub fn seconds(&self) -> f64 {
        self.ranks.iter().map(|r| r.seconds).fold(0.0, f64::max)
    }

    /// The worst exit code of any rank (0 only when every rank passed).
    pub fn exit_code(&self) -> u8 {
        self.ranks.iter().map(|r| r.exit_code).max().unwrap_or(0)
    }

    /// Hosts, in order of first rank, with their ranks' bytes and the longest of their durations.
    fn hosts(&self) -> Vec<(String, Vec<&RankSummary>)> {
        let mut out: Vec<(String, Vec<&RankSummary>)> = Vec::new();
        for r in &self.ranks {
            match out.iter_mut().find(|(h, _)| *h == r.host) {
                Some((_, rs)) => rs.push(r),
                None => out.push((r.host.clone(), vec![r])),
            }
        }
        out
    }

    /// The lines rank 0 adds to its table: the merged run, its phases, each rank and each host.
    pub fn lines(&self) -> Vec<String> {
        use crate::input::sanitize;
        use crate::size::format_size;
        let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
        let hosts = self.hosts();
        let mut lines = vec![format!(
            "all {} ranks on {} hosts: {} objects, {} in {:.3} s = {:.2} GB/s",
            self.ranks.len(),
            hosts.len(),
            self.objects(),
            format_size(self.bytes()),
            self.seconds(),
            self.bytes() as f64 / self.seconds().max(1e-9) / 1e9
        )];
        if !self.phases.is_empty() {
            lines.push(format!(
                "{:<16} {:>12} {:>8} {:>9} {:>8} {:>13} {:>15} {:>9} {:>9} {:>9}",
                "phase (all)", "bytes", "ops", "wall s", "GB/s", "slowest GB/s", "stonewall GB/s", "p50", "p99", "max"
            ));
            for p in self.phases.iter().take(50) {
                lines.push(format!(
                    "{:<16} {:>12} {:>8} {:>9.3} {:>8.2} {:>13.2} {:>15.2} {:>9} {:>9} {:>9}",
                    sanitize(&p.name, 64),
                    format_size(p.bytes()),
                    p.ops(),
                    p.wall_s,
                    p.gbps(),
                    p.slowest_gbps(),
                    p.stonewall_gbps(),
                    ms(q(&p.latency, 0.5)),
                    ms(q(&p.latency, 0.99)),
                    ms(p.latency.max()),
                ));
            }
            for p in self.phases.iter().take(50) {
                if let Some(by) = p.stonewalled_by {
                    lines.push(format!(
                        "stonewalled: phase {} ended for every rank when rank {by} finished first; {} objects and {} \
                         reads cut short (removed objects, stopped reads; their bytes so far are counted)",
                        sanitize(&p.name, 64),
                        p.cut_objects,
                        p.cut_reads
                    ));
                }
            }
        }
        lines.push(format!(
            "{:<6} {:<24} {:>12} {:>9} {:>8} {:>9} {:>9}  result",
            "rank", "host", "bytes", "seconds", "GB/s", "p50", "p99"
        ));
        for r in self.ranks.iter().take(256) {
            let h = r.object_latency();
            lines.push(format!(
                "{:<6} {:<24} {:>12} {:>9.3} {:>8.2} {:>9} {:>9}  {}",
                r.rank,
                sanitize(&r.host, 24),
                format_size(r.bytes),
                r.seconds,
                r.gbps(),
                ms(q(&h, 0.5)),
                ms(q(&h, 0.99)),
                match (&r.error, r.exit_code) {
                    (Some(e), c) => format!("exit {c}: {}", sanitize(e, 200)),
                    (None, 0) => "passed".into(),
                    (None, c) => format!("exit {c}: a check failed"),
                }
            ));
        }
        if self.ranks.len() > 256 {
            lines.push(format!("  … and {} more ranks (all of them are in --json-report)", self.ranks.len() - 256));
        }
        if hosts.len() > 1 {
            for (host, rs) in hosts.iter().take(256) {
                let bytes: u64 = rs.iter().map(|r| r.bytes).sum();
                let secs = rs.iter().map(|r| r.seconds).fold(0.0, f64::max);
                lines.push(format!(
                    "host {:<24} {} ranks, {} in {secs:.3} s = {:.2} GB/s",
                    sanitize(host, 24),
                    rs.len(),
                    format_size(bytes),
                    bytes as f64 / secs.max(1e-9) / 1e9
                ));
            }
        }
        lines
    }

    /// Rank 0's JSON report made the run's: merged totals and phases, `world_size`, `ranks`, `hosts`.
    pub fn into_json(&self, mut report: serde_json::Value) -> serde_json::Value {
        let lat =
            |h: &Histogram<u64>| json!({ "p50": q(h, 0.5), "p99": q(h, 0.99), "p999": q(h, 0.999), "max": h.max() });
        let phases: Vec<_> = self
            .phases
            .iter()
            .map(|p| {
                json!({
                    "name": p.name, "bytes": p.bytes(), "ops": p.ops(),
                    "seconds": p.wall_s, "gbps": p.gbps(),
                    "slowest_rank_seconds": p.slowest_s, "slowest_rank_gbps": p.slowest_gbps(),
                    "stonewall": { "seconds": p.stonewall_s, "bytes": p.stonewall_bytes, "gbps": p.stonewall_gbps() },
                    "latency_us": lat(&p.latency),
                    "written": p.written, "writes": p.writes, "read": p.read, "reads": p.reads,
                    "meta_ops": p.meta_ops, "read_failures": p.read_failures,
                    "stonewalled_by": p.stonewalled_by, "cut_objects": p.cut_objects, "cut_reads": p.cut_reads,
                })
            })
            .collect();
        let ranks: Vec<_> = self
            .ranks
            .iter()
            .map(|r| {
                let h = r.object_latency();
                json!({
                    "rank": r.rank, "host": r.host, "bytes": r.bytes, "objects": r.objects.len(),
                    "seconds": r.seconds, "run_seconds": r.run_seconds, "gbps": r.gbps(),
                    "latency_us": lat(&h), "exit_code": r.exit_code, "error": r.error,
                    "phases": r.phases.iter().map(|p| json!({
                        "name": p.name, "start_s": p.start_s, "seconds": p.seconds,
                        "bytes": p.written + p.read, "ops": p.writes + p.reads + p.meta_ops,
                        "gbps": (p.written + p.read) as f64 / p.seconds.max(1e-9) / 1e9,
                        "latency_us": lat(&histogram(&p.latency)),
                        "stonewalled_by": p.stonewalled_by, "cut_objects": p.cut_objects, "cut_reads": p.cut_reads,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let hosts: Vec<_> = self
            .hosts()
            .iter()
            .map(|(host, rs)| {
                let bytes: u64 = rs.iter().map(|r| r.bytes).sum();
                let secs = rs.iter().map(|r| r.seconds).fold(0.0, f64::max);
                json!({ "host": host, "ranks": rs.iter().map(|r| r.rank).collect::<Vec<_>>(), "bytes": bytes,
                        "seconds": secs, "gbps": bytes as f64 / secs.max(1e-9) / 1e9 })
            })
            .collect();
        let objects: Vec<_> = self
            .ranks
            .iter()
            .flat_map(|r| {
                r.objects.iter().map(move |o| {
                    json!({ "name": o.name, "size": o.size, "crc32c": o.crc32c, "latency_us": o.latency_us, "rank": r.rank })
                })
            })
            .collect();
        if let Some(m) = report.as_object_mut() {
            m.insert("world_size".into(), json!(self.ranks.len()));
            m.insert("bytes".into(), json!(self.bytes()));
            m.insert("objects".into(), json!(self.objects()));
            m.insert("seconds".into(), json!(self.seconds()));
            m.insert("gbps".into(), json!(self.bytes() as f64 / self.seconds().max(1e-9) / 1e9));
            m.insert("object_list".into(), json!(objects));
            m.insert("phases".into(), json!(phases));
            m.insert("ranks".into(), json!(ranks));
            m.insert("hosts".into(), json!(hosts));
        }
        report
    }
}

/// All ranks' figures on rank 0, and what gathering and merging them cost.
pub struct Gathered {
    pub merged: Merged,
    pub bytes: usize,
    pub merge_s: f64,
    pub costs: Costs,
}

impl Gathered {
    /// The merged lines, then what coordination cost.
    pub fn lines(&self) -> Vec<String> {
        let c = &self.costs;
        let mut lines = self.merged.lines();
        lines.push(format!(
            "coordination on rank 0: {} barriers, {:.3} s in them (waiting for slower ranks included), gather {:.3} s ({} bytes), merge {:.3} s",
            c.barriers,
            c.barrier_wait.as_secs_f64(),
            c.gather.as_secs_f64(),
            self.bytes,
            self.merge_s
        ));
        lines
    }

    /// Rank 0's JSON report made the run's, with its exit code and `coordination`.
    pub fn into_json(&self, report: serde_json::Value, exit_code: u8) -> serde_json::Value {
        let c = &self.costs;
        let mut j = self.merged.into_json(report);
        if let Some(m) = j.as_object_mut() {
            m.insert("exit_code".into(), json!(exit_code));
            m.insert(
                "coordination".into(),
                json!({"barriers": c.barriers, "barrier_s": c.barrier_wait.as_secs_f64(),
                       "gather_s": c.gather.as_secs_f64(), "gathered_bytes": self.bytes, "merge_s": self.merge_s}),
            );
        }
        j
    }
}

/// What every rank does once its own run is over. A rank that finished waits for the others (a
/// rank failing late is heard there); a run stopped by a peer's failure takes that failure as its
/// error; a rank that failed tells the others. Then, when no rank failed, every rank's summary
/// goes to rank 0, which gets them merged (`None` elsewhere, alone, or after a failure).
pub fn after_run(world: &World, outcome: &mut Outcome, cancel: &AtomicBool) -> Result<Option<Gathered>> {
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
    let mine = RankSummary::of(world.rank(), world.host(), outcome);
    let Some(all) = world.gather(mine.to_bytes())? else {
        return Ok(None);
    };
    let bytes = all.iter().map(Vec::len).sum();
    let t = std::time::Instant::now();
    let merged = Merged::new(all.iter().filter_map(|b| RankSummary::from_bytes(b)).collect());
    Ok(Some(Gathered { merged, bytes, merge_s: t.elapsed().as_secs_f64(), costs: world.costs() }))
}
