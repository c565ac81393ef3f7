//! Which content each dedup-unit block carries: the map from a block's position to its *content id*.
//!
//! Two blocks are identical exactly when their content ids are equal, so this map alone decides the
//! deduplication ratio. It must give, for a stream of N blocks, `N / D` distinct ids (exactly, not on
//! average), keep equal blocks far apart so that a compressor's window never sees both copies, and be
//! O(1) for any position so the data stays random-access.
//!
//! The stream is laid out as rows of `cols` blocks, one row spanning [`SPREAD`] bytes. Column `c`
//! carries a run of identical blocks down its rows; a new content starts when
//! `floor((row + 1) / D - u_c)` steps up, where `u_c` is the column's phase taken from a Weyl sequence
//! (evenly spread in [0, 1)). Hence:
//! - copies of a content sit exactly one row — `SPREAD` bytes — apart, and never closer;
//! - every column starts a new content once per D rows, with phases spread evenly across columns, so
//!   after `r` rows there are `r · cols / D` distinct contents, give or take a block or two;
//! - the first run of a column is 1–2 D rows long (`u_c` delays its first change): row 0 must be all
//!   new, and this is the fastest way to reach the exact ratio after it. A stream shorter than
//!   `D · SPREAD` cannot hold its ratio with copies that far apart; it gets `len / SPREAD` instead.

/// Distance between copies of a block; larger than the window of zstd up to level 7 (2 MiB),
/// lz4 (64 KiB) and gzip (32 KiB), so none of them turns dedup into compression.
pub const SPREAD: u64 = 4 << 20;

use super::copies::CopyTable;
use std::sync::Arc;

const WEYL: u64 = 0x9E37_79B9_7F4A_7C15;
/// A second Weyl step (1 / the plastic number) for choices that must not follow the first.
const WEYL2: u64 = 0xC13F_A9A9_02A6_328F;

#[derive(Clone, Debug)]
pub(crate) struct DedupMap {
    /// Blocks per row (SPREAD / unit).
    pub(super) cols: u64,
    /// 2^64 / D as a 64.64 fixed-point number, so the map is integer-exact on every machine.
    inv_d: u128,
    /// Rank `lane` of `lanes`: this stream's rows are rows `lane`, `lane + lanes`, … of the run's.
    lane: u64,
    lanes: u64,
    /// A duplicate-count distribution, read down the columns (None: every content D copies).
    columns: Option<Arc<Columns>>,
}

/// Where each column reads a [`CopyTable`]: its offset in the period, the run at its row 0, and
/// whether its first two runs are one content (see the `copies` module).
#[derive(Debug)]
struct Columns {
    table: Arc<CopyTable>,
    offset: Vec<u64>,
    first: Vec<u64>,
    join: Vec<bool>,
}

impl DedupMap {
    pub(crate) fn new(dedup: f64, unit: u64) -> Self {
        let inv_d = (18_446_744_073_709_551_616.0f64 / dedup) as u128;
        DedupMap { cols: (SPREAD / unit).max(1), inv_d, lane: 0, lanes: 1, columns: None }
    }

    /// The map of a duplicate-count table: each column reads the table from its own offset.
    pub(crate) fn with_table(mut self, table: Arc<CopyTable>) -> Self {
        let t = table.period();
        let d = table.mean();
        let frac = |x: u64| x as f64 / 18_446_744_073_709_551_616.0;
        let offset: Vec<u64> =
            (0..self.cols).map(|c| ((frac((c + 1).wrapping_mul(WEYL)) * t as f64) as u64).min(t - 1)).collect();
        let first = offset.iter().map(|&o| table.run_at(o)).collect();
        // Row 0's contents are all new; joining the first two runs in a share (D − 1) / D of the
        // columns takes back what that adds, so that any prefix holds rows · cols / D contents.
        let join = (0..self.cols).map(|c| frac((c + 1).wrapping_mul(WEYL2)) < (d - 1.0) / d).collect();
        self.columns = Some(Arc::new(Columns { table, offset, first, join }));
        self
    }

    /// Bytes the map holds for its columns (the table's own are the table's).
    pub(crate) fn column_bytes(&self) -> usize {
        self.columns.as_ref().map_or(0, |c| c.offset.len() * 17)
    }

    /// The map of rank `lane` of `lanes`: its rows interleave with the other ranks' in one run-wide
    /// stream, so that all ranks' data together — what one array behind all hosts stores — has the
    /// ratio, once every rank has written about as much.
    /// (lane, lanes) of this map.
    pub(crate) fn lane(&self) -> (u64, u64) {
        (self.lane, self.lanes)
    }

    pub(crate) fn with_lane(mut self, lane: u64, lanes: u64) -> Self {
        self.lanes = lanes.max(1);
        self.lane = lane % self.lanes;
        self
    }

    /// The content id of block `b`; ids are unique per (column, run), i.e. `run * cols + column`.
    #[inline]
    pub(crate) fn content(&self, b: u64) -> u64 {
        let row = b / self.cols * self.lanes + self.lane;
        let col = b % self.cols;
        if let Some(c) = &self.columns {
            let i = col as usize;
            let (t, m) = (c.table.period(), c.table.runs());
            let q = c.offset[i] + row;
            // Most rows are within the first two periods of their column: no division there.
            let (w, r) = if q < t {
                (0, q)
            } else if q < 2 * t {
                (1, q - t)
            } else {
                (q / t, q % t)
            };
            let run = w * m + c.table.run_at(r);
            let run = if c.join[i] && run == c.first[i] + 1 { c.first[i] } else { run };
            return run * self.cols + col;
        }
        // Column phase in 0.64 fixed point; (col + 1) * odd constant is never 0 mod 2^64.
        let u = (col + 1).wrapping_mul(WEYL) as u128;
        let t = (row as u128 + 1) * self.inv_d;
        let run = if t < u { 0 } else { ((t - u) >> 64) as u64 };
        run * self.cols + col
    }

    /// How many distinct contents the first `n` blocks of this stream hold: exactly what a dedup
    /// over that prefix finds, computed per column from its first and last row (O(columns)).
    /// A distribution of copies whose runs are long next to the rows a short stream has holds its
    /// mean only on average over columns; this says what a given length holds. `None` for one
    /// rank's lane of several (their rows interleave with the others').
    pub(crate) fn distinct_in(&self, n: u64) -> Option<u64> {
        if self.lanes != 1 {
            return None;
        }
        let (full, extra) = (n / self.cols, n % self.cols);
        let mut total = 0u64;
        for col in 0..self.cols.min(n) {
            let rows = full + u64::from(col < extra);
            // The first row's content and the last row's: runs in between are all distinct.
            let (a, b) = (self.content(col) / self.cols, self.content((rows - 1) * self.cols + col) / self.cols);
            total += b - a + 1;
            if let Some(c) = &self.columns {
                // A joined column's first content spans its first two runs (`content` gives the
                // second run the first's id): one fewer, once the column is past them.
                let i = col as usize;
                if c.join[i] && b >= c.first[i] + 2 {
                    total -= 1;
                }
            }
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn lanes_together_hold_the_ratio_and_share_nothing_else() {
        let (cols, rows) = (1024u64, 64u64);
        for &d in &[1.0, 2.0, 3.0, 8.0] {
            for lanes in [1u64, 2, 4, 7] {
                let mut all = HashSet::new();
                for lane in 0..lanes {
                    let m = DedupMap::new(d, 4096).with_lane(lane, lanes);
                    all.extend((0..rows * cols).map(|b| m.content(b)));
                }
                // The lanes' rows are exactly the first `rows * lanes` rows of one stream.
                let whole = distinct(&DedupMap::new(d, 4096), rows * lanes * cols);
                assert_eq!(all.len(), whole, "D={d} lanes={lanes}");
                let want = (rows * lanes * cols) as f64 / d;
                assert!((all.len() as f64 - want).abs() <= 3.0 + want * 1e-3, "D={d} lanes={lanes}: {}", all.len());
            }
        }
        // Lane 0 of 1 is the plain map.
        let (a, b) = (DedupMap::new(2.0, 4096), DedupMap::new(2.0, 4096).with_lane(0, 1));
        assert!((0..100_000).all(|x| a.content(x) == b.content(x)));
    }

    fn distinct(m: &DedupMap, n: u64) -> usize {
        (0..n).map(|b| m.content(b)).collect::<HashSet<_>>().len()
    }

    #[test]
    fn ratio_is_exact_past_the_warm_up() {
        for &d in &[1.0, 1.5, 2.0, 4.0, 7.3, 10.0] {
            let m = DedupMap::new(d, 4096);
            let cols = 1024u64;
            for rows in [(d * 2.0).ceil() as u64 + 1, 16, 40, 100] {
                for extra in [0u64, 1, 517] {
                    let n = rows * cols + extra;
                    if (n as f64) < d * cols as f64 {
                        continue;
                    }
                    let want = n as f64 / d;
                    let got = distinct(&m, n) as f64;
                    assert!((got - want).abs() <= 3.0 + want * 1e-3, "D={d} n={n}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn copies_are_a_row_apart() {
        let m = DedupMap::new(3.0, 4096);
        let mut last = std::collections::HashMap::new();
        for b in 0..50_000u64 {
            if let Some(prev) = last.insert(m.content(b), b) {
                assert_eq!(b - prev, 1024, "block {b} repeats block {prev}");
            }
        }
    }

    #[test]
    fn the_distinct_count_of_a_prefix_is_what_counting_finds() {
        let zipf = CopyTable::build(crate::generator::copies::CopySpec::Zipf(2.0), 4.0).unwrap();
        let hist = CopyTable::build(crate::generator::copies::CopySpec::Zipf(1.2), 3.0).unwrap();
        let maps = [
            DedupMap::new(1.0, 4096),
            DedupMap::new(2.5, 4096),
            DedupMap::new(4.0, 1 << 20),
            DedupMap::new(4.0, 1 << 20).with_table(zipf.clone()),
            DedupMap::new(4.0, 32 << 10).with_table(zipf),
            DedupMap::new(3.0, 4096).with_table(hist),
        ];
        for m in &maps {
            for n in [1, 3, 4, 127, 128, 1000, 1024, 5000, 40_000, 262_144 + 77] {
                assert_eq!(m.distinct_in(n), Some(distinct(m, n) as u64), "cols {} n {n}", m.cols);
            }
        }
        assert_eq!(DedupMap::new(2.0, 4096).with_lane(1, 2).distinct_in(10), None);
    }

    #[test]
    fn dedup_one_is_identity() {
        let m = DedupMap::new(1.0, 512);
        for b in (0..10_000_000u64).step_by(9973) {
            assert_eq!(m.content(b), b);
        }
    }
}
