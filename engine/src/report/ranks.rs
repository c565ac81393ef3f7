//! One report for a run on many ranks: each rank sends rank 0 a [`RankSummary`] of its run (its
//! bytes, objects and the [`PhaseFigures`] of its phases), and rank 0 merges them into the
//! [`WorldReport`]: the merged phases, a row per rank and per host, and what coordinating cost.
//!
//! Ranks start every phase at a barrier, and each rank measures its phases from the barrier the run
//! started at, so the offsets of different hosts' clocks never enter the figures.

use super::format::{gbps_of, ms2};
use super::phase::{histogram, Latency, PhaseFigures, PhaseReport};
use super::{CheckReport, ObjectReport};
use crate::size::format_size;
use crate::untrusted::sanitize;
use serde::{Deserialize, Serialize};

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
    pub objects: Vec<ObjectReport>,
    pub phases: Vec<PhaseFigures>,
}

impl RankSummary {
    /// What this summary holds in memory, bytes (its records with their names, and the
    /// allocator's share): what a later rank run in turn is charged for it.
    pub fn held(&self) -> usize {
        let objects: usize = self.objects.iter().map(|o| std::mem::size_of::<ObjectReport>() + o.name.len() + 32).sum();
        let phases: usize = self.phases.iter().map(PhaseFigures::held).sum();
        std::mem::size_of::<RankSummary>() + self.host.len() + objects + phases
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Option<RankSummary> {
        serde_json::from_slice(b).ok()
    }
}

/// A rank's row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RankReport {
    pub rank: u32,
    pub host: String,
    pub bytes: u64,
    pub objects: usize,
    pub seconds: f64,
    pub run_seconds: f64,
    pub gbps: f64,
    /// Of its objects, open to durable.
    pub latency_us: Latency,
    pub exit_code: u8,
    pub error: Option<String>,
    pub phases: Vec<PhaseReport>,
}

/// A host's row: its ranks, their bytes, and the longest of their durations.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostReport {
    pub host: String,
    pub ranks: Vec<u32>,
    pub bytes: u64,
    pub seconds: f64,
    pub gbps: f64,
}

/// What coordinating the ranks cost rank 0.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Coordination {
    pub barriers: u64,
    /// In barriers, waiting for slower ranks included.
    pub barrier_s: f64,
    pub gather_s: f64,
    pub gathered_bytes: usize,
    pub merge_s: f64,
}

/// All ranks' figures, merged: what rank 0's report adds to (and replaces in) its own
/// ([`super::Report::merge`]).
#[derive(Clone, Debug)]
pub struct WorldReport {
    pub world_size: usize,
    pub bytes: u64,
    pub objects: usize,
    /// Every rank's write time starts at the run's barrier: the longest is the wall time.
    pub seconds: f64,
    pub gbps: f64,
    /// Every rank's objects, each with its rank.
    pub object_list: Vec<ObjectReport>,
    pub phases: Vec<PhaseReport>,
    pub ranks: Vec<RankReport>,
    pub hosts: Vec<HostReport>,
    /// The worst exit code of any rank (0 only when every rank passed).
    pub exit_code: u8,
    /// Under a launcher.
    pub coordination: Option<Coordination>,
    /// Ranks run one after another in one process (`--world-size N` without a launcher): every
    /// rank's checks, each with its rank.
    pub checks: Option<Vec<CheckReport>>,
    pub ranks_in_turn: bool,
}

impl WorldReport {
    /// Merges the ranks' summaries. Phases are matched by position: every rank runs the same
    /// plugin, which names the same phases in the same order.
    pub fn merge(mut summaries: Vec<RankSummary>) -> WorldReport {
        summaries.sort_by_key(|r| r.rank);
        let n = summaries.iter().map(|r| r.phases.len()).max().unwrap_or(0);
        let phases = (0..n)
            .map(|i| PhaseReport::merged(&summaries.iter().filter_map(|r| r.phases.get(i)).collect::<Vec<_>>()))
            .collect();
        let ranks: Vec<RankReport> = summaries
            .iter()
            .map(|r| RankReport {
                rank: r.rank,
                host: r.host.clone(),
                bytes: r.bytes,
                objects: r.objects.len(),
                seconds: r.seconds,
                run_seconds: r.run_seconds,
                gbps: gbps_of(r.bytes, r.seconds),
                latency_us: Latency::of(&histogram(&r.objects.iter().map(|o| (o.latency_us, 1)).collect::<Vec<_>>())),
                exit_code: r.exit_code,
                error: r.error.clone(),
                phases: r.phases.iter().map(PhaseReport::of_figures).collect(),
            })
            .collect();
        let mut hosts: Vec<HostReport> = Vec::new();
        for r in &ranks {
            match hosts.iter_mut().find(|h| h.host == r.host) {
                Some(h) => {
                    h.ranks.push(r.rank);
                    h.bytes += r.bytes;
                    h.seconds = h.seconds.max(r.seconds);
                }
                None => hosts.push(HostReport {
                    host: r.host.clone(),
                    ranks: vec![r.rank],
                    bytes: r.bytes,
                    seconds: r.seconds,
                    gbps: 0.0,
                }),
            }
        }
        for h in &mut hosts {
            h.gbps = gbps_of(h.bytes, h.seconds);
        }
        let bytes = ranks.iter().map(|r| r.bytes).sum();
        let seconds = ranks.iter().map(|r| r.seconds).fold(0.0, f64::max);
        let object_list = summaries
            .iter()
            .flat_map(|r| r.objects.iter().map(move |o| ObjectReport { rank: Some(r.rank), ..o.clone() }))
            .collect();
        WorldReport {
            world_size: ranks.len(),
            bytes,
            objects: ranks.iter().map(|r| r.objects).sum(),
            seconds,
            gbps: gbps_of(bytes, seconds),
            object_list,
            phases,
            exit_code: ranks.iter().map(|r| r.exit_code).max().unwrap_or(0),
            ranks,
            hosts,
            coordination: None,
            checks: None,
            ranks_in_turn: false,
        }
    }

    /// The ranks whose checks did not pass (or that failed).
    pub fn not_passed(&self) -> Vec<u32> {
        self.ranks.iter().filter(|r| r.exit_code != 0).map(|r| r.rank).collect()
    }

    /// The lines rank 0 adds to its table: the merged run, its phases, each rank and each host,
    /// and what coordination cost.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "all {} ranks on {} hosts: {} objects, {} in {:.3} s = {:.2} GB/s",
            self.ranks.len(),
            self.hosts.len(),
            self.objects,
            format_size(self.bytes),
            self.seconds,
            self.gbps
        )];
        let object_phases: Vec<&PhaseReport> = self.phases.iter().filter(|p| p.jobs.engine.is_none()).collect();
        if !object_phases.is_empty() {
            lines.push(format!(
                "{:<16} {:>12} {:>8} {:>9} {:>8} {:>13} {:>15} {:>9} {:>9} {:>9}",
                "phase (all)", "bytes", "ops", "wall s", "GB/s", "slowest GB/s", "stonewall GB/s", "p50", "p99", "max"
            ));
            for p in object_phases.iter().take(50) {
                lines.push(format!(
                    "{:<16} {:>12} {:>8} {:>9.3} {:>8.2} {:>13.2} {:>15.2} {:>9} {:>9} {:>9}",
                    sanitize(&p.name, 64),
                    format_size(p.bytes),
                    p.ops,
                    p.seconds,
                    p.gbps,
                    p.slowest_rank_gbps,
                    p.stonewall.gbps,
                    ms2(p.latency_us.p50),
                    ms2(p.latency_us.p99),
                    ms2(p.latency_us.max),
                ));
            }
            for p in self.phases.iter().take(50) {
                if let Some(by) = p.stonewalled_by {
                    lines.push(format!(
                        "stonewalled: phase {} ended for every rank when rank {by} finished first; {} objects and {} \
                         reads cut short (removed objects, stopped reads; their bytes so far are counted)",
                        sanitize(&p.name, 64),
                        p.counts.cut_objects,
                        p.counts.cut_reads
                    ));
                }
            }
        }
        // Jobs' phases: all ranks' operations over the slowest rank's window.
        lines.extend(super::ops_table::ops_lines(&self.phases));
        lines.push(format!(
            "{:<6} {:<24} {:>12} {:>9} {:>8} {:>9} {:>9}  result",
            "rank", "host", "bytes", "seconds", "GB/s", "p50", "p99"
        ));
        for r in self.ranks.iter().take(256) {
            lines.push(format!(
                "{:<6} {:<24} {:>12} {:>9.3} {:>8.2} {:>9} {:>9}  {}",
                r.rank,
                sanitize(&r.host, 24),
                format_size(r.bytes),
                r.seconds,
                r.gbps,
                ms2(r.latency_us.p50),
                ms2(r.latency_us.p99),
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
        if self.hosts.len() > 1 {
            for h in self.hosts.iter().take(256) {
                lines.push(format!(
                    "host {:<24} {} ranks, {} in {:.3} s = {:.2} GB/s",
                    sanitize(&h.host, 24),
                    h.ranks.len(),
                    format_size(h.bytes),
                    h.seconds,
                    h.gbps
                ));
            }
        }
        if let Some(c) = &self.coordination {
            lines.push(format!(
                "coordination on rank 0: {} barriers, {:.3} s in them (waiting for slower ranks included), gather {:.3} s ({} bytes), merge {:.3} s",
                c.barriers, c.barrier_s, c.gather_s, c.gathered_bytes, c.merge_s
            ));
        }
        lines
    }
}
