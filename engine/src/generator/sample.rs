//! `dgen-engine profile`: a real data sample measured as a storage array would see it, and turned into
//! the `[data]` table that makes `gen` and `run` write data with the same statistics — without
//! copying any of the sample's content.
//!
//! What is measured, per file (each file starts on a block boundary, as an array stores it):
//! - dedup at the unit U and at 2U, 4U … 64 KiB: total blocks over distinct blocks (128-bit hashes);
//! - how many copies each distinct block has at U (the histogram `dedup_copies` takes);
//! - how well each block compresses on its own (zstd -1, as arrays compress a block), in a few bins,
//!   with the rule arrays apply: a block that saves less than 12.5 % is stored raw (ratio 1).
//!
//! Memory is bounded whatever the sample's size: distinct blocks are kept only for hashes whose low
//! bits are zero (content-defined sampling: all copies of a block are kept or dropped together, so the
//! ratio and the histogram stay unbiased estimates), and when the maps outgrow the budget one more bit
//! must be zero and half the entries go. The sampling rate is reported. Compression is measured on
//! every block (it needs no memory), in parallel.

use crate::error::{Error, Result};
use crate::size::format_size;
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest unit at which dedup is measured (and the largest extent proposed).
pub const MAX_PROFILE_UNIT: u64 = 64 << 10;
/// Bytes a map entry costs, hash table overhead included (for the budget).
const ENTRY_BYTES: usize = 40;
/// Bytes read at a time from a file (a whole number of every unit measured).
const READ: usize = 8 << 20;

/// What to measure.
#[derive(Clone, Debug)]
pub struct ProfileSpec {
    /// The sample's regular files and their sizes, as [`files`] lists them.
    pub files: Vec<(PathBuf, u64)>,
    /// The dedup unit U (a power of two, 512 B … 1 MiB).
    pub unit: u64,
    /// Bytes the dedup maps may take before they sample more sparsely.
    pub memory: usize,
}

/// Dedup measured at one unit.
#[derive(Clone, Debug)]
pub struct UnitDedup {
    pub unit: u64,
    /// Chunks seen (all, before sampling).
    pub chunks: u64,
    /// Sampled chunks and sampled distinct chunks: their ratio estimates the dedup ratio.
    pub sampled: u64,
    pub distinct: u64,
}

impl UnitDedup {
    pub fn ratio(&self) -> f64 {
        if self.distinct == 0 {
            1.0
        } else {
            self.sampled as f64 / self.distinct as f64
        }
    }
}

/// One bin of per-block compressibility.
#[derive(Clone, Debug)]
pub struct CompressBin {
    /// Ratios in [lo, hi) fall in this bin.
    pub lo: f64,
    pub hi: f64,
    pub blocks: u64,
    /// Their bytes before and after compression (the bin's ratio is their quotient).
    pub raw: u64,
    pub packed: u64,
}

impl CompressBin {
    pub fn ratio(&self) -> f64 {
        if self.packed == 0 {
            1.0
        } else {
            self.raw as f64 / self.packed as f64
        }
    }
}

/// What a sample looks like.
#[derive(Clone, Debug)]
pub struct Sample {
    pub files: u64,
    pub bytes: u64,
    pub unit: u64,
    pub dedup: Vec<UnitDedup>,
    /// (copies, distinct blocks with that many) at the unit, among the sampled blocks.
    pub copies: Vec<(u64, u64)>,
    pub compress: Vec<CompressBin>,
    /// One in this many blocks' hashes is kept (a power of two).
    pub sample_one_in: u64,
    /// Peak bytes the dedup maps held.
    pub memory: usize,
}

/// Bin edges of per-block ratios; below the first a block is stored raw.
const EDGES: [f64; 8] = [1.0 / 0.875, 1.5, 2.0, 3.0, 5.0, 10.0, 32.0, f64::INFINITY];

impl Sample {
    /// The dedup extent the sample suggests: the largest unit (up to 64 KiB) whose dedup stays
    /// within 3 % of the unit's, i.e. how long the runs of duplicates are.
    pub fn extent(&self) -> u64 {
        let base = self.dedup.first().map_or(1.0, UnitDedup::ratio);
        if base < 1.01 {
            return self.unit;
        }
        self.dedup.iter().filter(|d| d.ratio() >= base * 0.97).map(|d| d.unit).max().unwrap_or(self.unit)
    }

    /// The compressibility classes: (fraction of blocks, ratio), at most 8, ratios clamped to what a
    /// profile allows at this unit.
    pub fn mix(&self) -> Vec<(f64, f64)> {
        let total: u64 = self.compress.iter().map(|b| b.blocks).sum();
        if total == 0 {
            return vec![(1.0, 1.0)];
        }
        let max_c = (self.unit.min(crate::generator::GRANULE) / crate::generator::MIN_COMPRESSED) as f64;
        let mut classes: Vec<(f64, f64)> = self
            .compress
            .iter()
            .filter(|b| b.blocks > 0)
            .map(|b| {
                let f = (b.blocks as f64 / total as f64 * 1e4).round() / 1e4;
                let r = if b.lo < EDGES[0] { 1.0 } else { (b.ratio() * 1e3).round() / 1e3 };
                (f, r.clamp(1.0, max_c))
            })
            .filter(|c| c.0 > 0.0)
            .collect();
        // The fractions were rounded: the largest class takes up what is left, so they add up to 1.
        let sum: f64 = classes.iter().map(|c| c.0).sum();
        if let Some(big) = classes.iter_mut().max_by(|a, b| a.0.total_cmp(&b.0)) {
            big.0 = ((big.0 + 1.0 - sum) * 1e4).round() / 1e4;
        }
        classes
    }

    /// The `[data]` table (TOML) that makes `gen` and `run` write data like the sample.
    pub fn data_toml(&self) -> String {
        let mut t = String::from("[data]\n");
        t += &format!("dedup_unit = \"{}\"\n", format_size(self.unit).replace(' ', ""));
        let extent = self.extent();
        if extent != self.unit {
            t += &format!("dedup_extent = \"{}\"\n", format_size(extent).replace(' ', ""));
        }
        let rows: Vec<String> = self.copies.iter().map(|(k, n)| format!("[{k}, {n}]")).collect();
        t += &format!("dedup_copies = {{ histogram = [{}] }}\n", rows.join(", "));
        let mix: Vec<String> = self.mix().iter().map(|(f, r)| format!("[{f}, {r}]")).collect();
        t += &format!("compress_mix = [{}]\n", mix.join(", "));
        t
    }

    /// The sample as JSON: what was measured and the `[data]` table.
    pub fn json(&self, paths: &[PathBuf]) -> serde_json::Value {
        serde_json::json!({
            "paths": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "files": self.files,
            "bytes": self.bytes,
            "unit": self.unit,
            "sample_one_in": self.sample_one_in,
            "memory_bytes": self.memory,
            "dedup": self.dedup.iter().map(|d| serde_json::json!({
                "unit": d.unit, "ratio": d.ratio(), "chunks": d.chunks, "sampled": d.sampled, "distinct": d.distinct,
            })).collect::<Vec<_>>(),
            "copies": self.copies.iter().map(|&(k, n)| [k, n]).collect::<Vec<_>>(),
            "compress": self.compress.iter().filter(|b| b.blocks > 0).map(|b| serde_json::json!({
                "min_ratio": b.lo, "max_ratio": if b.hi.is_finite() { Some(b.hi) } else { None },
                "blocks": b.blocks, "ratio": b.ratio(),
            })).collect::<Vec<_>>(),
            "extent": self.extent(),
            "compress_mix": self.mix().iter().map(|&(f, r)| [f, r]).collect::<Vec<_>>(),
            "data": self.data_toml(),
        })
    }
}

/// The dedup maps, one per unit, sampled alike.
struct Maps {
    units: Vec<u64>,
    maps: Vec<HashMap<u128, u32>>,
    chunks: Vec<u64>,
    sampled: Vec<u64>,
    /// A hash is kept when its low `bits` bits are zero.
    bits: u32,
    budget: usize,
    peak: usize,
}

impl Maps {
    fn keep(&self, h: u128) -> bool {
        h & ((1u128 << self.bits) - 1) == 0
    }

    fn add(&mut self, i: usize, h: u128) {
        self.chunks[i] += 1;
        if self.keep(h) {
            self.sampled[i] += 1;
            *self.maps[i].entry(h).or_default() += 1;
        }
    }

    fn entries(&self) -> usize {
        self.maps.iter().map(HashMap::len).sum()
    }

    /// Halves the sampling rate while the maps are over budget.
    fn fit(&mut self) {
        self.peak = self.peak.max(self.entries() * ENTRY_BYTES);
        while self.entries() * ENTRY_BYTES > self.budget && self.bits < 64 {
            self.bits += 1;
            let mask = (1u128 << self.bits) - 1;
            for (i, m) in self.maps.iter_mut().enumerate() {
                let before: u64 = m.values().map(|&c| c as u64).sum();
                m.retain(|h, _| h & mask == 0);
                let after: u64 = m.values().map(|&c| c as u64).sum();
                self.sampled[i] -= before - after;
            }
        }
    }
}

/// Every regular file under `paths` (directories walked in name order, symlinks not followed),
/// with its size.
pub fn files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    for p in paths {
        // What the user names must be something to measure: a FIFO would block, a device never
        // end, a symlink is not followed.
        let meta = std::fs::symlink_metadata(p).map_err(|e| Error::io(p, e))?;
        let kind = meta.file_type();
        let what = if kind.is_symlink() {
            Some("a symlink (not followed: name what it points to)")
        } else if kind.is_fifo() || kind.is_socket() {
            Some("a FIFO or socket")
        } else if kind.is_block_device() || kind.is_char_device() {
            Some("a device")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(Error::InvalidValue {
                key: "PATH",
                value: p.display().to_string(),
                reason: format!("is {what}; profile measures regular files and the directories holding them"),
            });
        }
        walk(p, &mut out)?;
    }
    if out.iter().all(|(_, size)| *size == 0) {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::InvalidValue {
            key: "PATH",
            value: names.join(" "),
            reason: "holds no regular file with data: there is nothing to measure".into(),
        });
    }
    Ok(out)
}

fn walk(p: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    let meta = std::fs::symlink_metadata(p).map_err(|e| Error::io(p, e))?;
    if meta.is_file() {
        out.push((p.to_path_buf(), meta.len()));
    } else if meta.is_dir() {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(p).map_err(|e| Error::io(p, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            walk(&e, out)?;
        }
    }
    Ok(())
}

/// Measures the sample; `progress(bytes)` is told the bytes read so far.
pub fn scan(spec: &ProfileSpec, progress: &mut dyn FnMut(u64), cancel: &AtomicBool) -> Result<Sample> {
    let unit = spec.unit;
    if !unit.is_power_of_two() || !(crate::generator::MIN_UNIT..=crate::generator::MAX_UNIT).contains(&unit) {
        return Err(Error::InvalidValue {
            key: "--unit",
            value: format_size(unit),
            reason: "must be a power of two from 512 B to 1 MiB".into(),
        });
    }
    let mut units = vec![unit];
    while units.last().is_some_and(|&u| u * 2 <= MAX_PROFILE_UNIT) {
        units.push(units.last().unwrap() * 2);
    }
    let n = units.len();
    let mut maps = Maps {
        units: units.clone(),
        maps: vec![HashMap::new(); n],
        chunks: vec![0; n],
        sampled: vec![0; n],
        bits: 0,
        budget: spec.memory.max(1 << 20),
        peak: 0,
    };
    let mut bins: Vec<CompressBin> = EDGES
        .iter()
        .enumerate()
        .map(|(i, &hi)| CompressBin { lo: if i == 0 { 0.0 } else { EDGES[i - 1] }, hi, blocks: 0, raw: 0, packed: 0 })
        .collect();
    let mut buf = vec![0u8; READ];
    let (mut done, mut count) = (0u64, 0u64);
    for (path, _) in &spec.files {
        // Not through a symlink, never waiting on a FIFO put there since the walk.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .and_then(|f| match f.metadata()?.is_file() {
                true => Ok(f),
                false => Err(std::io::Error::other("is no longer a regular file")),
            });
        let mut f = match opened {
            Ok(f) => f,
            Err(e) => return Err(Error::io(path, e)),
        };
        count += 1;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let got = read_full(&mut f, &mut buf).map_err(|e| Error::io(path, e))?;
            if got == 0 {
                break;
            }
            let data = &buf[..got];
            // Hashes for every unit, and each block's compressed size, in parallel.
            let hashes: Vec<Vec<u128>> = maps
                .units
                .par_iter()
                .map(|&u| data.chunks(u as usize).map(xxhash_rust::xxh3::xxh3_128).collect())
                .collect();
            for (i, hs) in hashes.into_iter().enumerate() {
                for h in hs {
                    maps.add(i, h);
                }
            }
            maps.fit();
            let packed: Vec<(usize, usize)> = data
                .par_chunks(unit as usize)
                .map_init(
                    || zstd::bulk::Compressor::new(1).ok(),
                    |z, block| {
                        let out = z.as_mut().and_then(|z| z.compress(block).ok()).map_or(block.len(), |c| c.len());
                        (block.len(), out.min(block.len()))
                    },
                )
                .collect();
            for (raw, out) in packed {
                let r = raw as f64 / out.max(1) as f64;
                let i = EDGES.iter().position(|&e| r < e).unwrap_or(EDGES.len() - 1);
                let b = &mut bins[i];
                b.blocks += 1;
                b.raw += raw as u64;
                // Stored raw below the first edge: it takes its whole size.
                b.packed += if i == 0 { raw as u64 } else { out as u64 };
            }
            done += got as u64;
            progress(done);
            if got < buf.len() {
                break;
            }
        }
    }
    let mut copies: HashMap<u64, u64> = HashMap::new();
    for &c in maps.maps[0].values() {
        *copies.entry(c as u64).or_default() += 1;
    }
    let mut copies: Vec<(u64, u64)> = copies.into_iter().collect();
    copies.sort_unstable();
    let dedup = (0..n)
        .map(|i| UnitDedup {
            unit: maps.units[i],
            chunks: maps.chunks[i],
            sampled: maps.sampled[i],
            distinct: maps.maps[i].len() as u64,
        })
        .collect();
    Ok(Sample {
        files: count,
        bytes: done,
        unit,
        dedup,
        copies,
        compress: bins,
        sample_one_in: 1u64 << maps.bits.min(63),
        memory: maps.peak,
    })
}

/// Reads until `buf` is full or the file ends.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Sample {
    /// The comment lines `profile` prints above the `[data]` table: what was scanned (`names`) in
    /// `secs`, dedup at each unit, and the per-block compressibility.
    pub fn summary_lines(&self, names: &[String], secs: f64) -> Vec<String> {
        use crate::size::format_size;
        let mut lines = vec![format!("# dgen-engine profile of {}", names.join(" "))];
        lines.push(format!(
            "# {} files, {} in {secs:.1} s ({:.2} GB/s); dedup sampled 1 in {} blocks, maps {} at most",
            self.files,
            format_size(self.bytes),
            self.bytes as f64 / secs.max(1e-9) / 1e9,
            self.sample_one_in,
            format_size(self.memory as u64)
        ));
        let at: Vec<String> = self.dedup.iter().map(|d| format!("{} {:.3}", format_size(d.unit), d.ratio())).collect();
        lines.push(format!("# dedup at {}", at.join(", ")));
        let total: u64 = self.compress.iter().map(|b| b.blocks).sum::<u64>().max(1);
        let bins: Vec<String> = self
            .compress
            .iter()
            .filter(|b| b.blocks > 0)
            .map(|b| format!("{:.1}% at {:.2}", 100.0 * b.blocks as f64 / total as f64, b.ratio()))
            .collect();
        lines.push(format!(
            "# per-block zstd -1 ({} blocks, raw when saving < 12.5 %): {}",
            format_size(self.unit),
            bins.join(", ")
        ));
        lines
    }
}
