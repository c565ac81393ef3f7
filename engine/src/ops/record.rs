//! What a phase keeps of the jobs run in it: per-kind counters and histograms (summed over its
//! jobs), their windows, the series (each job's points, placed from the phase's start), the prefill
//! and the read-back. Its size does not grow with the operations, only with the intervals.

use super::check::CheckFigures;
use super::spec::OpKind;
use super::stats::{
    new_histogram, new_kinds, pairs, KindFigures, KindStats, Kinds, Point, PointKind, MAX_LATENCY_NS, POINT_BYTES,
};
use super::{JobOutcome, PrefillFigures};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug)]
pub struct PhaseOps {
    pub kinds: Kinds,
    /// The jobs' figure windows, summed (jobs run one after another).
    pub seconds: f64,
    pub series: Vec<Point>,
    pub prefill: Option<PrefillFigures>,
    pub check: Option<CheckFigures>,
    pub engine: &'static str,
    pub jobs: u32,
}

impl Default for PhaseOps {
    fn default() -> Self {
        PhaseOps {
            kinds: new_kinds(),
            seconds: 0.0,
            series: Vec::new(),
            prefill: None,
            check: None,
            engine: "",
            jobs: 0,
        }
    }
}

impl PhaseOps {
    /// Adds a job that started `at` seconds after the phase.
    pub fn add(&mut self, o: &JobOutcome, at: f64) {
        for (a, b) in self.kinds.iter_mut().zip(&o.kinds) {
            a.add(b);
        }
        self.seconds += o.seconds;
        // A job with a prefill starts its operations after it.
        let shift = at + o.prefill.as_ref().map_or(0.0, |p| p.seconds);
        self.series.extend(o.series.iter().map(|p| Point { t: p.t + shift, ..p.clone() }));
        if let Some(p) = &o.prefill {
            let mine = self.prefill.get_or_insert_with(PrefillFigures::default);
            mine.bytes += p.bytes;
            mine.ios += p.ios;
            mine.seconds += p.seconds;
        }
        if let Some(c) = &o.check {
            match &mut self.check {
                None => self.check = Some(c.clone()),
                Some(m) => m.add(c),
            }
        }
        self.engine = o.driver.name();
        self.jobs += 1;
    }

    /// Bytes its series holds (what the host charges for it).
    pub fn series_bytes(points: usize) -> usize {
        points * POINT_BYTES
    }
}

/// One kind's counters and latency histogram as (ns, count) pairs: what a rank sends to be merged.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KindPairs {
    pub ios: u64,
    pub bytes: u64,
    pub latency: Vec<(u64, u64)>,
}

impl KindPairs {
    fn of(k: &KindStats) -> KindPairs {
        KindPairs { ios: k.ios, bytes: k.bytes, latency: pairs(&k.latency) }
    }
}

/// What a rank tells rank 0 of the jobs of one phase, to be merged exactly (counters summed,
/// histograms added) — but for the series' latencies, which a rank keeps as percentiles: merged,
/// an interval's percentiles are the slowest rank's (an upper bound), its counts and rates sums.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OpsFigures {
    /// read, write, trim, fsync.
    pub kinds: Vec<KindPairs>,
    pub seconds: f64,
    pub series: Vec<Point>,
    pub prefill: Option<PrefillFigures>,
    pub check: Option<CheckFigures>,
    pub engine: String,
}

impl PhaseOps {
    /// Its figures, to send or to report.
    pub fn to_figures(&self) -> OpsFigures {
        OpsFigures {
            kinds: self.kinds.iter().map(KindPairs::of).collect(),
            seconds: self.seconds,
            series: self.series.clone(),
            prefill: self.prefill.clone(),
            check: self.check.clone(),
            engine: self.engine.to_string(),
        }
    }
}

impl OpsFigures {
    fn stats(&self, k: OpKind) -> KindStats {
        let mut s = KindStats { latency: new_histogram(), ..KindStats::default() };
        if let Some(p) = self.kinds.get(k.index()) {
            s.ios = p.ios;
            s.bytes = p.bytes;
            for &(v, n) in &p.latency {
                let _ = s.latency.record_n(v.clamp(1, MAX_LATENCY_NS), n);
            }
        }
        s
    }

    /// One kind's figures (none when it did not run).
    pub fn figures(&self, k: OpKind) -> Option<KindFigures> {
        let s = self.stats(k);
        (s.ios > 0).then(|| KindFigures::of(&s, self.seconds))
    }

    /// Bytes it holds (what a later rank run in turn is charged for it).
    pub fn held(&self) -> usize {
        self.kinds.iter().map(|k| k.latency.len() * 16).sum::<usize>() + PhaseOps::series_bytes(self.series.len()) + 512
    }

    /// The jobs of one phase over all ranks: counters summed and histograms added; the window is
    /// the slowest rank's (so rates are all ranks' operations over it); the series merged interval
    /// by interval.
    pub fn merge(of: &[&OpsFigures]) -> OpsFigures {
        let mut kinds = Vec::new();
        for k in OpKind::ALL {
            let mut s = KindStats::default();
            for f in of {
                s.add(&f.stats(k));
            }
            kinds.push(KindPairs::of(&s));
        }
        let mut check: Option<CheckFigures> = None;
        let mut prefill: Option<PrefillFigures> = None;
        for f in of {
            if let Some(c) = &f.check {
                check.get_or_insert_with(CheckFigures::default).add(c);
            }
            if let Some(p) = &f.prefill {
                let m = prefill.get_or_insert_with(PrefillFigures::default);
                m.bytes += p.bytes;
                m.ios += p.ios;
                m.seconds = m.seconds.max(p.seconds);
            }
        }
        OpsFigures {
            kinds,
            seconds: of.iter().map(|f| f.seconds).fold(0.0, f64::max),
            series: merge_series(of),
            prefill,
            check,
            engine: of.first().map_or_else(String::new, |f| f.engine.clone()),
        }
    }
}

fn merge_kind(a: Option<&PointKind>, b: Option<&PointKind>) -> Option<PointKind> {
    let (a, b) = match (a, b) {
        (None, None) => return None,
        (Some(x), None) | (None, Some(x)) => return Some(x.clone()),
        (Some(a), Some(b)) => (a, b),
    };
    let ios = a.ios + b.ios;
    let mean = if ios == 0 {
        0
    } else {
        ((a.lat_mean_ns as u128 * a.ios as u128 + b.lat_mean_ns as u128 * b.ios as u128) / ios as u128) as u64
    };
    Some(PointKind {
        ios,
        bytes: a.bytes + b.bytes,
        iops: a.iops + b.iops,
        bw_bytes: a.bw_bytes + b.bw_bytes,
        lat_mean_ns: mean,
        lat_p50_ns: a.lat_p50_ns.max(b.lat_p50_ns),
        lat_p90_ns: a.lat_p90_ns.max(b.lat_p90_ns),
        lat_p99_ns: a.lat_p99_ns.max(b.lat_p99_ns),
        lat_p999_ns: a.lat_p999_ns.max(b.lat_p999_ns),
        lat_max_ns: a.lat_max_ns.max(b.lat_max_ns),
    })
}

/// The ranks' series, interval by interval (every rank starts a phase at the same barrier).
fn merge_series(of: &[&OpsFigures]) -> Vec<Point> {
    let n = of.iter().map(|f| f.series.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| {
            let mut out: Option<Point> = None;
            for p in of.iter().filter_map(|f| f.series.get(i)) {
                out = Some(match out {
                    None => p.clone(),
                    Some(m) => Point {
                        t: m.t.min(p.t),
                        seconds: m.seconds.max(p.seconds),
                        ramp: m.ramp || p.ramp,
                        read: merge_kind(m.read.as_ref(), p.read.as_ref()),
                        write: merge_kind(m.write.as_ref(), p.write.as_ref()),
                        trim: merge_kind(m.trim.as_ref(), p.trim.as_ref()),
                        fsync: merge_kind(m.fsync.as_ref(), p.fsync.as_ref()),
                    },
                });
            }
            out.unwrap_or_default()
        })
        .collect()
}
