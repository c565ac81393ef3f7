//! What a job measures: per operation kind, counters and an exact latency histogram (ns) for its
//! figures after the ramp, and a series of per-interval points. Nothing per operation is kept: a
//! ring records into its own histograms and hands an interval's over when it moves past it, so the
//! memory is the same for ten operations as for ten million (histograms, plus one small point per
//! interval).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Latencies are recorded from 1 ns to this (100 s); longer ones count as this.
pub const MAX_LATENCY_NS: u64 = 100_000_000_000;

/// fio's percentile list and its keys ("50.000000").
pub const PERCENTILES: [f64; 17] =
    [1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99];

/// A histogram as (value, count) pairs: exact to send and merge.
pub fn pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// One kind's counters and latencies.
#[derive(Clone, Debug)]
pub struct KindStats {
    pub ios: u64,
    pub bytes: u64,
    pub latency: Histogram<u64>,
}

impl Default for KindStats {
    fn default() -> Self {
        KindStats { ios: 0, bytes: 0, latency: new_histogram() }
    }
}

impl KindStats {
    #[inline]
    pub fn record(&mut self, bytes: u64, ns: u64) {
        self.ios += 1;
        self.bytes += bytes;
        let _ = self.latency.record(ns.clamp(1, MAX_LATENCY_NS));
    }
    pub fn add(&mut self, o: &KindStats) {
        self.ios += o.ios;
        self.bytes += o.bytes;
        let _ = self.latency.add(&o.latency);
    }
    pub fn reset(&mut self) {
        self.ios = 0;
        self.bytes = 0;
        self.latency.reset();
    }
}

/// The four kinds' stats.
pub type Kinds = [KindStats; 4];

pub fn new_kinds() -> Kinds {
    std::array::from_fn(|_| KindStats::default())
}

/// Latency figures as fio's JSON names them (`clat_ns`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClatNs {
    pub min: u64,
    pub max: u64,
    pub mean: f64,
    pub stddev: f64,
    #[serde(rename = "N")]
    pub n: u64,
    /// "1.000000" … "99.990000" → ns.
    pub percentile: BTreeMap<String, u64>,
}

impl ClatNs {
    pub fn of(h: &Histogram<u64>) -> ClatNs {
        if h.is_empty() {
            return ClatNs::default();
        }
        ClatNs {
            min: h.min(),
            max: h.max(),
            mean: h.mean(),
            stddev: h.stdev(),
            n: h.len(),
            percentile: PERCENTILES.iter().map(|&p| (format!("{p:.6}"), h.value_at_percentile(p))).collect(),
        }
    }
    /// A percentile by fio's key value (50.0 → "50.000000"); 0 when not listed.
    pub fn at(&self, p: f64) -> u64 {
        self.percentile.get(&format!("{p:.6}")).copied().unwrap_or(0)
    }
}

/// One kind's figures over a job (fio's names where the concept is the same).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KindFigures {
    pub io_bytes: u64,
    pub bw_bytes: u64,
    pub iops: f64,
    pub total_ios: u64,
    /// Milliseconds the figures are over (fio's `runtime`).
    pub runtime: u64,
    pub clat_ns: ClatNs,
}

impl KindFigures {
    pub fn of(k: &KindStats, seconds: f64) -> KindFigures {
        let per_s = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
        KindFigures {
            io_bytes: k.bytes,
            bw_bytes: per_s(k.bytes as f64) as u64,
            iops: per_s(k.ios as f64),
            total_ios: k.ios,
            runtime: (seconds * 1000.0).round() as u64,
            clat_ns: ClatNs::of(&k.latency),
        }
    }
}

/// One kind in one interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PointKind {
    pub ios: u64,
    pub bytes: u64,
    pub iops: f64,
    pub bw_bytes: u64,
    pub lat_mean_ns: u64,
    pub lat_p50_ns: u64,
    pub lat_p90_ns: u64,
    pub lat_p99_ns: u64,
    pub lat_p999_ns: u64,
    pub lat_max_ns: u64,
}

impl PointKind {
    fn of(k: &KindStats, seconds: f64) -> PointKind {
        let h = &k.latency;
        let q = |p: f64| if h.is_empty() { 0 } else { h.value_at_percentile(p) };
        PointKind {
            ios: k.ios,
            bytes: k.bytes,
            iops: k.ios as f64 / seconds,
            bw_bytes: (k.bytes as f64 / seconds) as u64,
            lat_mean_ns: if h.is_empty() { 0 } else { h.mean() as u64 },
            lat_p50_ns: q(50.0),
            lat_p90_ns: q(90.0),
            lat_p99_ns: q(99.0),
            lat_p999_ns: q(99.9),
            lat_max_ns: if h.is_empty() { 0 } else { h.max() },
        }
    }
}

/// One interval of a series.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Seconds from the job's start to the interval's start.
    pub t: f64,
    /// The interval's length, seconds (the last one may be shorter).
    pub seconds: f64,
    /// It began within the ramp: its figures are not in the job's.
    pub ramp: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub read: Option<PointKind>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub write: Option<PointKind>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trim: Option<PointKind>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fsync: Option<PointKind>,
}

/// Bytes a [`Point`] holds (what the host charges per interval).
pub const POINT_BYTES: usize = std::mem::size_of::<Point>() + 4 * std::mem::size_of::<PointKind>();

/// Gathers the rings' intervals into points: an interval becomes a point once every ring has moved
/// past it, so only the intervals rings are still in are held as histograms.
pub struct SeriesBuilder {
    interval_ns: u64,
    ramp_ns: u64,
    /// Per ring: every interval below this one has been handed over.
    passed: Vec<u64>,
    pending: BTreeMap<u64, Kinds>,
    pub points: Vec<Point>,
    /// The job's end (ns from its start), for the last point's length.
    end_ns: Option<u64>,
}

impl SeriesBuilder {
    pub fn new(interval_ns: u64, ramp_ns: u64, rings: usize) -> Mutex<SeriesBuilder> {
        Mutex::new(SeriesBuilder {
            interval_ns: interval_ns.max(1),
            ramp_ns,
            passed: vec![0; rings],
            pending: BTreeMap::new(),
            points: Vec::new(),
            end_ns: None,
        })
    }

    /// Ring `ring` hands over interval `index`'s stats and moves on to `next` (> index).
    pub fn hand_over(&mut self, ring: usize, index: u64, stats: &Kinds, next: u64) {
        self.add(index, stats);
        self.passed[ring] = self.passed[ring].max(next);
        self.settle();
    }

    /// Ring `ring` hands over its last interval, `index`, and is done; its last completion was
    /// `end_ns` after the start.
    pub fn finish(&mut self, ring: usize, index: u64, stats: &Kinds, end_ns: u64) {
        self.add(index, stats);
        self.done(ring, end_ns);
    }

    fn add(&mut self, index: u64, stats: &Kinds) {
        if stats.iter().any(|k| k.ios > 0) {
            let slot = self.pending.entry(index).or_insert_with(new_kinds);
            for (a, b) in slot.iter_mut().zip(stats) {
                a.add(b);
            }
        }
    }

    /// Ring `ring` is done (it handed over its last interval).
    pub fn done(&mut self, ring: usize, end_ns: u64) {
        self.passed[ring] = u64::MAX;
        self.end_ns = Some(self.end_ns.unwrap_or(0).max(end_ns));
        self.settle();
    }

    fn settle(&mut self) {
        let upto = *self.passed.iter().min().unwrap_or(&0);
        let last = if upto == u64::MAX { self.end_ns.map_or(0, |e| e.div_ceil(self.interval_ns)) } else { upto };
        while (self.points.len() as u64) < last {
            let i = self.points.len() as u64;
            let start = i * self.interval_ns;
            let end = match self.end_ns {
                Some(e) if upto == u64::MAX => ((i + 1) * self.interval_ns).min(e.max(start + 1)),
                _ => (i + 1) * self.interval_ns,
            };
            let seconds = (end - start) as f64 / 1e9;
            let mut p = Point { t: start as f64 / 1e9, seconds, ramp: start < self.ramp_ns, ..Point::default() };
            if let Some(k) = self.pending.remove(&i) {
                let of = |s: &KindStats| (s.ios > 0).then(|| PointKind::of(s, seconds));
                p.read = of(&k[0]);
                p.write = of(&k[1]);
                p.trim = of(&k[2]);
                p.fsync = of(&k[3]);
            }
            self.points.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_become_points_once_every_ring_is_past_them() {
        let b = SeriesBuilder::new(1_000_000_000, 1_000_000_000, 2);
        let mut s = b.lock().unwrap();
        let mut k = new_kinds();
        k[0].record(4096, 1000);
        s.hand_over(0, 0, &k, 1);
        assert!(s.points.is_empty(), "ring 1 is still in interval 0");
        s.hand_over(1, 0, &k, 2);
        assert_eq!(s.points.len(), 1);
        assert_eq!(s.points[0].read.as_ref().unwrap().ios, 2);
        assert!(s.points[0].ramp);
        s.done(0, 2_500_000_000);
        s.done(1, 2_500_000_000);
        assert_eq!(s.points.len(), 3, "empty intervals are points too");
        assert!(!s.points[1].ramp && s.points[1].read.is_none());
        assert!((s.points[2].seconds - 0.5).abs() < 1e-9);
    }

    #[test]
    fn fio_keys() {
        let mut k = KindStats::default();
        for i in 1..=1000 {
            k.record(4096, i * 1000);
        }
        let f = KindFigures::of(&k, 2.0);
        assert_eq!((f.total_ios, f.io_bytes, f.iops), (1000, 4_096_000, 500.0));
        let p50 = f.clat_ns.percentile["50.000000"];
        assert!((499_000..=501_000).contains(&p50), "{p50}");
        assert!(f.clat_ns.percentile.contains_key("99.990000"));
    }
}
