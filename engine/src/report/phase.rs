//! A phase as the report shows it — one shape for a phase of one rank, a rank's row in a run of many,
//! and a phase merged over all ranks — and [`PhaseFigures`], what a rank sends rank 0 of each of its
//! phases so they can be merged exactly: counters summed, latency histograms added bucket by bucket
//! (never percentiles averaged), and the two throughputs people quote:
//!
//! - **wall**: all ranks' bytes over the time from the first rank's start to the last rank's end;
//! - **slowest rank** (MLPerf Storage's): all ranks' bytes over the longest single rank's duration.

use super::format::gbps_of;
use crate::ops::check::CheckFigures;
use crate::ops::record::OpsFigures;
use crate::ops::spec::OpKind;
use crate::ops::stats::{pairs, KindFigures, Point};
use crate::ops::PrefillFigures;
use crate::pipeline::phase::{Counters, Phase, Timeline};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Latency percentiles, µs (0 without operations).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let q = |x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
        Latency { p50: q(0.5), p99: q(0.99), p999: q(0.999), max: h.max() }
    }
}

/// Reads' time to first byte, µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ttfb {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// Where a phase's time went (seconds): its window, thread time generating, in read calls and
/// checking, and wall time with writes or reads in flight or waiting for buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSplit {
    pub window_s: f64,
    pub generate_s: f64,
    pub writes_in_flight_s: f64,
    pub write_buffer_wait_s: f64,
    pub reads_in_flight_s: f64,
    pub read_calls_s: f64,
    pub check_s: f64,
    pub read_buffer_wait_s: f64,
}

/// The stonewalled window, as IOR's `-D` reports it: the first rank to finish the phase ends it for
/// the figures — the bytes every rank had done by then, over that time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StonewallWindow {
    pub seconds: f64,
    pub bytes: u64,
    pub gbps: f64,
}

/// Where enforced stonewalling (`stonewall = true`) ended a rank's phase: seconds from its start,
/// and the rank that finished first.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stonewalled {
    pub at_s: f64,
    pub by_rank: u32,
}

/// One phase in the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    pub name: String,
    /// From the run's start (the barrier it began at) to the phase's start; 0 for a merged phase.
    pub start_s: f64,
    pub bytes: u64,
    pub ops: u64,
    /// To its last operation done (merged: first start to last end over the ranks).
    pub seconds: f64,
    pub gbps: f64,
    pub slowest_rank_seconds: f64,
    pub slowest_rank_gbps: f64,
    pub stonewall: StonewallWindow,
    pub latency_us: Latency,
    pub ttfb_us: Ttfb,
    #[serde(flatten)]
    pub counts: Counters,
    /// For reads of files: the share of their pages in the page cache as they were opened.
    pub cached_fraction: Option<f64>,
    pub stonewalled: Option<Stonewalled>,
    pub stonewalled_by: Option<u32>,
    /// Of one rank's phase; none for a merged one.
    pub time_split: Option<TimeSplit>,
    /// What the jobs of the operations engine run in it add (nothing for a phase without one).
    #[serde(flatten)]
    pub jobs: JobFigures,
}

/// What the jobs of the operations engine (contract 1.2) add to a phase, as the report names it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobFigures {
    /// Per operation kind, fio's names (`iops`, `bw_bytes`, `io_bytes`, `total_ios`,
    /// `clat_ns.percentile`), after their ramp.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub read: Option<KindFigures>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub write: Option<KindFigures>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trim: Option<KindFigures>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fsync: Option<KindFigures>,
    /// Per interval (`series_interval`, from the phase's start), ramp marked.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub series: Vec<Point>,
    /// The region written whole before the jobs' operations.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prefill: Option<PrefillFigures>,
    /// The read-back of the jobs' regions: counts and the first blocks that failed, by offset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub region_check: Option<CheckFigures>,
    /// How the jobs' operations were driven (`io_uring`, `psync`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub engine: Option<String>,
}

impl JobFigures {
    fn of(o: &OpsFigures) -> JobFigures {
        JobFigures {
            read: o.figures(OpKind::Read),
            write: o.figures(OpKind::Write),
            trim: o.figures(OpKind::Trim),
            fsync: o.figures(OpKind::Fsync),
            series: o.series.clone(),
            prefill: o.prefill.clone(),
            region_check: o.check.clone(),
            engine: Some(o.engine.clone()),
        }
    }
}

/// A latency histogram as (value µs, count) pairs: exact to merge.
pub type Pairs = Vec<(u64, u64)>;

pub(crate) fn histogram(p: &[(u64, u64)]) -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
    for &(v, n) in p {
        let _ = h.record_n(v.clamp(1, 3_600_000_000), n);
    }
    h
}

/// What a rank tells rank 0 of one of its phases.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseFigures {
    pub name: String,
    /// From the run's start (the barrier it began at) to the phase's start, and its duration.
    pub start_s: f64,
    pub seconds: f64,
    #[serde(flatten)]
    pub counts: Counters,
    pub latency: Pairs,
    #[serde(default)]
    pub ttfb: Pairs,
    /// Bytes done per time bucket from its start.
    pub timeline: Timeline,
    /// Stonewalling: the rank whose finish ended this rank's phase.
    #[serde(default)]
    pub stonewalled_by: Option<u32>,
    /// The jobs of the operations engine run in it.
    #[serde(default)]
    pub ops: Option<OpsFigures>,
}

impl PhaseFigures {
    pub fn of(p: &Phase, run_start: Option<Instant>) -> PhaseFigures {
        PhaseFigures {
            name: p.name.clone(),
            start_s: run_start.map_or(0.0, |s| p.started.saturating_duration_since(s).as_secs_f64()),
            seconds: p.seconds(),
            counts: p.counts,
            latency: pairs(&p.latency),
            ttfb: pairs(&p.ttfb),
            timeline: p.timeline.clone(),
            stonewalled_by: p.stonewalled.map(|(_, by)| by),
            ops: p.ops.as_ref().map(|o| o.to_figures()),
        }
    }

    /// What these figures hold in memory, bytes (what a later rank run in turn is charged for them).
    pub fn held(&self) -> usize {
        std::mem::size_of::<PhaseFigures>()
            + self.name.len()
            + (self.latency.len() + self.ttfb.len()) * 16
            + self.timeline.bytes.len() * 8
            + self.ops.as_ref().map_or(0, OpsFigures::held)
            + 1024
    }
}

fn ttfb_of(h: &Histogram<u64>) -> Ttfb {
    let l = Latency::of(h);
    Ttfb { p50: l.p50, p99: l.p99, max: l.max }
}

impl PhaseReport {
    /// A phase of this rank, `run_start` being when its first phase started.
    pub fn of(p: &Phase, run_start: Option<Instant>) -> PhaseReport {
        let s = &p.split;
        let mut r = PhaseReport::of_figures(&PhaseFigures::of(p, run_start));
        // From the phase's own histograms, not their pairs.
        r.latency_us = Latency::of(&p.latency);
        r.ttfb_us = ttfb_of(&p.ttfb);
        r.cached_fraction = p.cached_fraction();
        r.stonewalled = p.stonewalled.map(|(at_s, by_rank)| Stonewalled { at_s, by_rank });
        r.time_split = Some(TimeSplit {
            window_s: p.window().as_secs_f64(),
            generate_s: s.generate.as_secs_f64(),
            writes_in_flight_s: s.writes_in_flight.as_secs_f64(),
            write_buffer_wait_s: s.write_buffer_wait.as_secs_f64(),
            reads_in_flight_s: s.reads_in_flight.as_secs_f64(),
            read_calls_s: s.read_calls.as_secs_f64(),
            check_s: s.check.as_secs_f64(),
            read_buffer_wait_s: s.read_buffer_wait.as_secs_f64(),
        });
        r
    }

    /// A rank's phase from the figures it sent.
    pub fn of_figures(f: &PhaseFigures) -> PhaseReport {
        let (bytes, seconds) = (f.counts.bytes(), f.seconds);
        let gbps = gbps_of(bytes, seconds);
        PhaseReport {
            name: f.name.clone(),
            start_s: f.start_s,
            bytes,
            ops: f.counts.ops(),
            seconds,
            gbps,
            slowest_rank_seconds: seconds,
            slowest_rank_gbps: gbps,
            stonewall: StonewallWindow { seconds, bytes, gbps },
            latency_us: Latency::of(&histogram(&f.latency)),
            ttfb_us: ttfb_of(&histogram(&f.ttfb)),
            counts: f.counts,
            cached_fraction: None,
            stonewalled: None,
            stonewalled_by: f.stonewalled_by,
            time_split: None,
            jobs: f.ops.as_ref().map(JobFigures::of).unwrap_or_default(),
        }
    }

    /// One phase over all ranks (`of` holds each rank's figures of it).
    pub fn merged(of: &[&PhaseFigures]) -> PhaseReport {
        let jobs: Vec<&OpsFigures> = of.iter().filter_map(|p| p.ops.as_ref()).collect();
        let ops = (!jobs.is_empty()).then(|| OpsFigures::merge(&jobs));
        let (mut latency, mut ttfb) = (histogram(&[]), histogram(&[]));
        let mut counts = Counters::default();
        for p in of {
            let _ = latency.add(histogram(&p.latency));
            let _ = ttfb.add(histogram(&p.ttfb));
            counts.add(&p.counts);
        }
        let first = of.iter().map(|p| p.start_s).fold(f64::INFINITY, f64::min);
        let last = of.iter().map(|p| p.start_s + p.seconds).fold(0.0, f64::max);
        let wall = (last - first).max(0.0);
        let slowest = of.iter().map(|p| p.seconds).fold(0.0, f64::max);
        // The first rank done with its share (among those that had one) ends the stonewalled window.
        let busy: Vec<&&PhaseFigures> = of.iter().filter(|p| p.counts.bytes() > 0).collect();
        let stonewall_s = busy.iter().map(|p| p.seconds).fold(f64::INFINITY, f64::min);
        let stonewall_s = if stonewall_s.is_finite() { stonewall_s } else { 0.0 };
        let stonewall_bytes = busy.iter().map(|p| p.timeline.by(stonewall_s).min(p.counts.bytes())).sum();
        let bytes = counts.bytes();
        PhaseReport {
            name: of.first().map_or_else(String::new, |p| p.name.clone()),
            start_s: 0.0,
            bytes,
            ops: counts.ops(),
            seconds: wall,
            gbps: gbps_of(bytes, wall),
            slowest_rank_seconds: slowest,
            slowest_rank_gbps: gbps_of(bytes, slowest),
            stonewall: StonewallWindow {
                seconds: stonewall_s,
                bytes: stonewall_bytes,
                gbps: gbps_of(stonewall_bytes, stonewall_s),
            },
            latency_us: Latency::of(&latency),
            ttfb_us: ttfb_of(&ttfb),
            counts,
            cached_fraction: None,
            stonewalled: None,
            stonewalled_by: of.iter().find_map(|p| p.stonewalled_by),
            time_split: None,
            jobs: ops.as_ref().map(JobFigures::of).unwrap_or_default(),
        }
    }
}
