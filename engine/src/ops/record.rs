//! What a phase keeps of the jobs run in it: per-kind counters and histograms (summed over its
//! jobs), their windows, the series (each job's points, placed from the phase's start), the prefill
//! and the read-back. Its size does not grow with the operations, only with the intervals.

use super::check::CheckFigures;
use super::spec::OpKind;
use super::stats::{new_kinds, KindFigures, Kinds, Point, POINT_BYTES};
use super::{JobOutcome, PrefillFigures};

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
                Some(m) => {
                    m.blocks += c.blocks;
                    m.checked += c.checked;
                    m.good += c.good;
                    m.unknown += c.unknown;
                    m.lost_writes += c.lost_writes;
                    m.torn += c.torn;
                    m.corrupt += c.corrupt;
                    m.landed += c.landed;
                    m.lost_write_visible_blocks += c.lost_write_visible_blocks;
                    m.bytes += c.bytes;
                    m.seconds += c.seconds;
                    let room = super::check::MAX_PROBLEMS.saturating_sub(m.problems.len());
                    m.problems.extend(c.problems.iter().take(room).cloned());
                }
            }
        }
        self.engine = o.driver.name();
        self.jobs += 1;
    }

    pub fn figures(&self, k: OpKind) -> Option<KindFigures> {
        let s = &self.kinds[k.index()];
        (s.ios > 0).then(|| KindFigures::of(s, self.seconds))
    }

    /// Bytes its series holds (what the host charges for it).
    pub fn series_bytes(points: usize) -> usize {
        points * POINT_BYTES
    }
}
