//! A data profile as the report gives it: the workload's `[data]` keys, with the extent always and
//! the mix (its classes, and `compress` the stream ratio it implies) and the copy table when there
//! is one.

use crate::generator::copies::CopySpec;
use crate::generator::Profile;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct DataReport {
    pub dedup: f64,
    pub compress: f64,
    pub dedup_unit: u64,
    pub dedup_extent: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress_mix: Option<Vec<[f64; 2]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_copies: Option<Copies>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_table: Option<CopyTableReport>,
}

/// How many copies each distinct block has, as the workload said it.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Copies {
    /// `"even"`.
    Even(&'static str),
    Zipf {
        zipf: f64,
    },
    /// Rows given inline (`[copies, blocks]` pairs).
    Rows {
        histogram: Vec<[u64; 2]>,
    },
    /// Rows from a file: its path and how many rows it had.
    File {
        histogram: String,
        rows: usize,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct CopyTableReport {
    pub runs: u64,
    pub period_rows: u64,
    pub bytes: usize,
}

impl DataReport {
    pub fn of(p: &Profile) -> DataReport {
        let mix = (!p.mix().is_empty()).then(|| p.mix().iter().map(|c| [c.fraction, c.ratio]).collect());
        let copies = p.copies().map(|t| match &t.spec {
            CopySpec::Even => Copies::Even("even"),
            CopySpec::Zipf(s) => Copies::Zipf { zipf: *s },
            CopySpec::Histogram { path, rows } if path.as_os_str().is_empty() => {
                Copies::Rows { histogram: rows.iter().map(|&(k, n)| [k, n]).collect() }
            }
            CopySpec::Histogram { path, rows } => {
                Copies::File { histogram: path.display().to_string(), rows: rows.len() }
            }
        });
        DataReport {
            dedup: p.dedup(),
            compress: p.compress(),
            dedup_unit: p.unit(),
            dedup_extent: p.extent(),
            compress_mix: mix,
            dedup_copies: copies,
            dedup_table: p.copies().map(|t| CopyTableReport {
                runs: t.runs(),
                period_rows: t.period(),
                bytes: t.bytes(),
            }),
        }
    }
}
