//! How many copies each distinct block has: the *duplicate-count distribution* of a dedup profile.
//!
//! The plain map ([`super::dedup::DedupMap`]) gives every content D copies. Real data sets do not:
//! most blocks are unique and a few are copied thousands of times (DEDISbench's and vdbench's
//! `deduphotsets` model this with a distribution). Here a distribution — `zipf` with exponent s and
//! mean D, or a histogram of `copies, blocks` lines measured on a sample — becomes a [`CopyTable`]:
//! M runs of k₁ … k_M copies whose histogram is the distribution's (counts rounded, the singletons
//! adjusted so that the mean, Σk / M, is D), laid out in a low-discrepancy order (the run at position p
//! has the length of quantile frac(p·φ)), so that any stretch of the table holds a fair sample of short
//! and long runs.
//!
//! The dedup map reads the table down each column of its grid (a row is 4 MiB, a column one extent
//! wide, as for the plain map): column c starts at its own offset in the table (Weyl-spread over the
//! period T = Σk), and each run of k rows is one content with k copies, exactly 4 MiB apart. Row `r`
//! of column c is position (offset + r) of the table, found in O(1) through a bucket index. Because
//! offsets are spread evenly, each row starts about `cols / D` new contents, which is what keeps the
//! ratio exact over any prefix; the contents of row 0 are all new, so a share (D − 1) / D of the
//! columns join their first two runs into one content, which is what the plain map's longer first
//! run does too. A content with k copies spans k × 4 MiB of the stream, so a data set shows copy
//! counts up to its length / 4 MiB; longer runs are cut where the data ends.
//!
//! Memory: the table (8 bytes per run plus 4 per bucket, at most [`MAX_RUNS`] runs: under 4 MiB),
//! shared by every generator of the profile, and 16 bytes per column in each generator.

use crate::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most runs a table holds; bounds its memory.
pub const MAX_RUNS: usize = 1 << 18;
/// Largest copy count a distribution may give one block.
pub const MAX_COPIES: u64 = 1 << 24;
/// Largest histogram file read.
const MAX_FILE: u64 = 16 << 20;
/// Runs in a table when the distribution needs no more: 64 rows of 1,024 columns hold a whole
/// period, so a 256 MiB stream at 4 KiB blocks already sees every run length in its share.
const BASE_CELLS: f64 = 65536.0;

/// A duplicate-count distribution as the user wrote it.
#[derive(Clone, Debug, PartialEq)]
pub enum CopySpec {
    /// Every content D copies (the plain map).
    Even,
    /// P(k copies) ∝ k^−s for k = 1 … K, K (and the weight of k = K) set so that the mean is D.
    Zipf(f64),
    /// `copies, blocks` rows: this many distinct blocks have this many copies; the mean is D. The
    /// path is the file they came from (empty: given inline, as `profile` prints them).
    Histogram { path: PathBuf, rows: Vec<(u64, u64)> },
}

impl fmt::Display for CopySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopySpec::Even => write!(f, "even"),
            CopySpec::Zipf(s) => write!(f, "zipf:{s}"),
            CopySpec::Histogram { path, rows } if path.as_os_str().is_empty() => {
                write!(f, "histogram ({} rows)", rows.len())
            }
            CopySpec::Histogram { path, rows } => write!(f, "histogram {} ({} rows)", path.display(), rows.len()),
        }
    }
}

impl CopySpec {
    /// Reads a histogram file: `copies, blocks` per line (a comma or spaces between), `#` comments
    /// and blank lines ignored. Errors name the file and line.
    pub fn histogram_file(path: &Path) -> Result<CopySpec, Error> {
        // Unreadable input named by a key or flag is bad input (exit 2), not a storage failure.
        let bytes = crate::untrusted::read_regular(path, MAX_FILE).map_err(|e| Error::InvalidValue {
            key: "data.dedup_copies",
            value: path.display().to_string(),
            reason: format!("cannot be read: {e}"),
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: String| Error::InvalidValue {
                key: "data.dedup_copies",
                value: format!("{}:{}", path.display(), i + 1),
                reason: why,
            };
            let fields: Vec<&str> =
                line.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).collect();
            let [copies, blocks] = fields[..] else {
                return Err(bad(format!("'{}' is not 'copies, blocks'", crate::untrusted::sanitize(line, 80))));
            };
            let num = |s: &str| {
                s.parse::<u64>()
                    .map_err(|_| bad(format!("'{}' is not a whole number", crate::untrusted::sanitize(s, 40))))
            };
            let (k, n) = (num(copies)?, num(blocks)?);
            if k == 0 || k > MAX_COPIES {
                return Err(bad(format!("{k} copies: must be from 1 to {MAX_COPIES}")));
            }
            rows.push((k, n));
        }
        CopySpec::histogram(path, rows)
    }

    /// A histogram given as rows (inline when `path` is empty); checks what a file's rows must hold.
    pub fn histogram(path: &Path, rows: Vec<(u64, u64)>) -> Result<CopySpec, Error> {
        let bad = |reason: String| Error::InvalidValue {
            key: "data.dedup_copies",
            value: if path.as_os_str().is_empty() { "histogram".into() } else { path.display().to_string() },
            reason,
        };
        if let Some(&(k, _)) = rows.iter().find(|r| r.0 == 0 || r.0 > MAX_COPIES) {
            return Err(bad(format!("{k} copies: must be from 1 to {MAX_COPIES}")));
        }
        if rows.iter().all(|&(_, n)| n == 0) {
            return Err(bad("holds no 'copies, blocks' row with blocks > 0".into()));
        }
        Ok(CopySpec::Histogram { path: path.to_path_buf(), rows })
    }

    /// `even`, `zipf:S`, or a histogram file's path (as `gen --dedup-copies` takes it).
    pub fn parse(text: &str) -> Result<CopySpec, Error> {
        match text.trim() {
            "even" => Ok(CopySpec::Even),
            t if t.starts_with("zipf:") => {
                let s = t["zipf:".len()..].trim();
                s.parse::<f64>().map(CopySpec::Zipf).map_err(|_| Error::InvalidValue {
                    key: "data.dedup_copies",
                    value: text.to_string(),
                    reason: format!("'{s}' is not a number (zipf:S, e.g. zipf:1.2)"),
                })
            }
            path => CopySpec::histogram_file(Path::new(path)),
        }
    }

    /// The mean copies per distinct block a histogram implies (None for the other kinds).
    pub fn implied_dedup(&self) -> Option<f64> {
        match self {
            CopySpec::Histogram { rows, .. } => {
                let (mut blocks, mut copies) = (0f64, 0f64);
                for &(k, n) in rows {
                    blocks += n as f64;
                    copies += (k * n) as f64;
                }
                Some(copies / blocks)
            }
            _ => None,
        }
    }
}

/// A distribution made concrete: run lengths in table order, their prefix sums and a bucket index.
#[derive(Debug)]
pub struct CopyTable {
    pub spec: CopySpec,
    /// `starts[j]` is the first row of run j in the period; `starts[M]` the period T.
    starts: Vec<u64>,
    /// `index[q >> shift]` is the run holding row `q >> shift << shift`.
    index: Vec<u32>,
    shift: u32,
    /// The fraction of distinct blocks with each copy count, as the table holds them.
    histogram: Vec<(u64, f64)>,
}

impl PartialEq for CopyTable {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec && self.starts == other.starts
    }
}

impl CopyTable {
    /// The table of `spec` with mean `dedup`. Errors name `data.dedup_copies`.
    pub fn build(spec: CopySpec, dedup: f64) -> Result<Arc<CopyTable>, Error> {
        let bad = |reason: String| Error::InvalidValue { key: "data.dedup_copies", value: spec.to_string(), reason };
        // The distribution as (copies, weight of distinct blocks).
        let weights: Vec<(u64, f64)> = match &spec {
            CopySpec::Even => return Err(bad("the even distribution needs no table".into())),
            CopySpec::Zipf(s) => zipf(*s, dedup).map_err(bad)?,
            CopySpec::Histogram { rows, .. } => {
                let mut w: Vec<(u64, f64)> = rows.iter().filter(|r| r.1 > 0).map(|&(k, n)| (k, n as f64)).collect();
                w.sort_by_key(|r| r.0);
                w.dedup_by(|b, a| {
                    if a.0 == b.0 {
                        a.1 += b.1;
                        true
                    } else {
                        false
                    }
                });
                w
            }
        };
        let total: f64 = weights.iter().map(|w| w.1).sum();
        // Enough runs that the rarest copy count still gets one, within the bound.
        let rarest = weights.iter().map(|w| w.1 / total).fold(1.0, f64::min);
        let runs = (BASE_CELLS / dedup).max(1.0 / rarest).clamp(64.0, MAX_RUNS as f64) as usize;
        let mut counts: Vec<(u64, u64)> =
            weights.iter().map(|&(k, w)| (k, (w / total * runs as f64).round() as u64)).collect();
        // The mean must be D: adjust the singletons (or, without room there, the smallest count).
        fit_mean(&mut counts, dedup);
        let m: u64 = counts.iter().map(|c| c.1).sum();
        if m == 0 || m > MAX_RUNS as u64 * 2 {
            return Err(bad(format!("cannot lay out {m} runs")));
        }
        let mut sorted: Vec<u64> = Vec::with_capacity(m as usize);
        for &(k, n) in &counts {
            sorted.extend(std::iter::repeat_n(k, n as usize));
        }
        // Position p gets the length of quantile frac(p·φ): a low-discrepancy interleaving.
        let mut order: Vec<(u64, u32)> =
            (0..m).map(|p| ((p + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15), p as u32)).collect();
        order.sort_unstable();
        let mut lengths = vec![0u64; m as usize];
        for (i, &(_, p)) in order.iter().enumerate() {
            lengths[p as usize] = sorted[i];
        }
        let mut starts = Vec::with_capacity(lengths.len() + 1);
        let mut t = 0u64;
        for &k in &lengths {
            starts.push(t);
            t += k;
        }
        starts.push(t);
        // Buckets about as long as the shortest runs, so a lookup scans a run or two.
        let shift = (t / m).max(1).ilog2().min(40);
        let mut index = Vec::with_capacity((t >> shift) as usize + 1);
        let mut j = 0usize;
        for b in 0..=(t >> shift) {
            let q = b << shift;
            while j + 1 < lengths.len() && starts[j + 1] <= q {
                j += 1;
            }
            index.push(j as u32);
        }
        let histogram = counts.iter().filter(|c| c.1 > 0).map(|&(k, n)| (k, n as f64 / m as f64)).collect();
        Ok(Arc::new(CopyTable { spec, starts, index, shift, histogram }))
    }

    /// Runs in one period.
    pub fn runs(&self) -> u64 {
        self.starts.len() as u64 - 1
    }

    /// Rows in one period (Σ of the run lengths).
    pub fn period(&self) -> u64 {
        *self.starts.last().expect("a table has its end")
    }

    /// The mean copies per content the table holds: its dedup ratio.
    pub fn mean(&self) -> f64 {
        self.period() as f64 / self.runs() as f64
    }

    /// The fraction of distinct blocks with each copy count.
    pub fn histogram(&self) -> &[(u64, f64)] {
        &self.histogram
    }

    /// Bytes the table holds.
    pub fn bytes(&self) -> usize {
        self.starts.len() * 8 + self.index.len() * 4 + self.histogram.len() * 16
    }

    /// The run holding row `q` of the period (`q < period`).
    #[inline]
    pub(crate) fn run_at(&self, q: u64) -> u64 {
        let mut j = self.index[(q >> self.shift) as usize] as usize;
        while self.starts[j + 1] <= q {
            j += 1;
        }
        j as u64
    }

    /// The first row of run `j`.
    #[cfg(test)]
    pub(crate) fn start(&self, j: u64) -> u64 {
        self.starts[j as usize]
    }
}

/// Zipf weights over k = 1 … K with mean `dedup`: K the smallest whose full mean reaches it, the
/// weight of k = K scaled so that the mean is `dedup` exactly.
fn zipf(s: f64, dedup: f64) -> Result<Vec<(u64, f64)>, String> {
    if !s.is_finite() || !(0.1..=10.0).contains(&s) {
        return Err(format!("the zipf exponent {s} must be from 0.1 to 10"));
    }
    let (mut s0, mut s1) = (0f64, 0f64);
    let mut w = Vec::new();
    for k in 1..=MAX_COPIES {
        let wk = (k as f64).powf(-s);
        let kf = k as f64;
        if (s1 + kf * wk) / (s0 + wk) >= dedup {
            // The share of k = K that makes the mean exactly D.
            let alpha = if kf > dedup { (dedup * s0 - s1) / (wk * (kf - dedup)) } else { 1.0 };
            if alpha > 0.0 {
                w.push((k, wk * alpha.min(1.0)));
            }
            return Ok(w);
        }
        s0 += wk;
        s1 += kf * wk;
        w.push((k, wk));
    }
    Err(format!(
        "zipf with exponent {s} cannot reach dedup {dedup} within {MAX_COPIES} copies a block (its mean stops at {:.3}); lower the exponent or the dedup",
        s1 / s0
    ))
}

/// Adjusts the count of the smallest copy count so that Σ k·n / Σ n is as close to `dedup` as
/// whole counts allow (singletons lower the mean; removing them raises it).
fn fit_mean(counts: &mut [(u64, u64)], dedup: f64) {
    let Some((first, rest)) = counts.split_first_mut() else { return };
    let k1 = first.0 as f64;
    let rest_n: u64 = rest.iter().map(|c| c.1).sum();
    let rest_kn: u64 = rest.iter().map(|c| c.0 * c.1).sum();
    // (rest_kn + k1·n) / (rest_n + n) = D  →  n = (rest_kn − D·rest_n) / (D − k1)
    if (dedup - k1).abs() < 1e-12 {
        return;
    }
    let n = (rest_kn as f64 - dedup * rest_n as f64) / (dedup - k1);
    if n.is_finite() && n >= 0.0 {
        first.1 = n.round() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_tables_have_the_mean_and_the_shape() {
        for (s, d) in [(2.0, 2.0), (1.2, 3.0), (3.0, 1.3), (1.0, 10.0)] {
            let t = CopyTable::build(CopySpec::Zipf(s), d).unwrap();
            assert!((t.mean() / d - 1.0).abs() < 1e-3, "s={s} D={d}: mean {}", t.mean());
            // P(1) / P(2) = 2^s where both are whole counts of many runs.
            let h = t.histogram();
            let ratio = h[0].1 / h[1].1;
            assert!((ratio / 2f64.powf(s) - 1.0).abs() < 0.05, "s={s} D={d}: P1/P2 {ratio}");
            assert!(t.bytes() < 4 << 20);
        }
        assert!(CopyTable::build(CopySpec::Zipf(3.0), 5.0).unwrap_err().to_string().contains("cannot reach dedup 5"));
    }

    #[test]
    fn lookups_find_the_run_of_every_row() {
        let t = CopyTable::build(CopySpec::Zipf(1.5), 4.0).unwrap();
        let mut j = 0;
        for q in 0..t.period() {
            while t.start(j + 1) <= q {
                j += 1;
            }
            assert_eq!(t.run_at(q), j, "row {q}");
        }
    }

    #[test]
    fn a_histogram_keeps_its_shape_and_mean() {
        let rows = vec![(1, 6000), (2, 2000), (4, 1000), (10, 100), (100, 10)];
        let spec = CopySpec::Histogram { path: "h".into(), rows };
        let d = spec.implied_dedup().unwrap();
        let t = CopyTable::build(spec, d).unwrap();
        assert!((t.mean() / d - 1.0).abs() < 1e-3, "{} vs {d}", t.mean());
        let want = [(1, 6000.0 / 9110.0), (2, 2000.0 / 9110.0), (4, 1000.0 / 9110.0), (10, 100.0 / 9110.0)];
        for (k, f) in want {
            let got = t.histogram().iter().find(|h| h.0 == k).unwrap().1;
            assert!((got - f).abs() < 0.002, "{k} copies: {got} vs {f}");
        }
    }
}
