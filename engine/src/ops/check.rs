//! Reads a region back and checks every block against the generation the map says it holds.
//!
//! A block that differs is told apart, 512-byte sector by sector, against the generations it could
//! hold instead:
//! - **lost write** — it holds, whole, an older generation of its own (a write acknowledged, and the
//!   block never got it);
//! - **torn** — its sectors hold two or more of its generations (a write half done);
//! - **corrupt** — anything else (bytes the engine never wrote there).
//!
//! A block whose write was in flight when the map was saved (a journal after a crash) may hold
//! either the generation before that write or the one it wrote; both pass, and the map takes the one
//! found. Shared blocks (see [`crate::generator::region`]) are the same at every generation: on them
//! a lost write cannot be seen, and a difference is corruption. Blocks of generation 0 (never
//! written by the engine, trimmed) are not checked.
//!
//! Nothing of what is read goes to the plugin: it gets the counts; the report gets the first
//! [`MAX_PROBLEMS`] blocks with their offsets.

use super::genmap::{GenMap, BUSY};
use super::Region;
use crate::error::{Error, Result};
use crate::generator::region::{next_gen, prev_gen, RegionData, MAX_GEN};
use crate::pool::BufferPool;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Blocks listed by offset in the report; the rest are counted.
pub const MAX_PROBLEMS: usize = 100;
const SECTOR: usize = 512;
/// Reads of this many bytes.
const CHUNK: u64 = 1 << 20;
/// Mismatching blocks whose every earlier generation is tried; later ones try the last two only.
const DEEP_SEARCHES: u64 = 1000;

/// What is wrong with a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    LostWrite,
    Torn,
    Corrupt,
}

/// A block that failed its check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// Byte offset in the file or device.
    pub offset: u64,
    /// The file, in a pool of objects (the region's own file otherwise: not named).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub object: Option<String>,
    pub kind: ProblemKind,
    /// The generation it should hold.
    pub expected: u8,
    /// The older generation it holds (a lost write).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub found: Option<u8>,
}

/// A region's check.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckFigures {
    pub blocks: u64,
    /// Blocks read and compared (generation known).
    pub checked: u64,
    pub good: u64,
    /// Generation 0: nothing to compare with.
    pub unknown: u64,
    pub lost_writes: u64,
    pub torn: u64,
    pub corrupt: u64,
    /// Of the good ones, blocks whose write was in flight and landed.
    pub landed: u64,
    /// Blocks where a lost write can be seen (their content is theirs alone).
    pub lost_write_visible_blocks: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub problems: Vec<Problem>,
}

impl CheckFigures {
    pub fn failed(&self) -> u64 {
        self.lost_writes + self.torn + self.corrupt
    }

    /// Adds another read-back (another job's, another rank's); the problems listed stay the first
    /// [`MAX_PROBLEMS`].
    pub fn add(&mut self, c: &CheckFigures) {
        self.blocks += c.blocks;
        self.checked += c.checked;
        self.good += c.good;
        self.unknown += c.unknown;
        self.lost_writes += c.lost_writes;
        self.torn += c.torn;
        self.corrupt += c.corrupt;
        self.landed += c.landed;
        self.lost_write_visible_blocks += c.lost_write_visible_blocks;
        self.bytes += c.bytes;
        self.seconds = self.seconds.max(c.seconds);
        let room = MAX_PROBLEMS.saturating_sub(self.problems.len());
        self.problems.extend(c.problems.iter().take(room).cloned());
    }
}

enum Verdict {
    Good,
    Landed,
    Bad(ProblemKind, Option<u8>),
}

/// Checks one block: `found` against generation `g` (`busy`: its write was in flight).
fn classify(data: &RegionData, b: u64, byte: u8, found: &[u8], scratch: &mut [u8], deep: bool) -> Verdict {
    let (g, busy) = (byte & !BUSY, byte & BUSY != 0);
    data.fill_block(b, g, scratch);
    if scratch == found {
        return Verdict::Good;
    }
    let shared = data.is_shared(b);
    if busy && !shared {
        data.fill_block(b, next_gen(g), scratch);
        if scratch == found {
            return Verdict::Landed;
        }
    }
    if shared {
        return Verdict::Bad(ProblemKind::Corrupt, None);
    }
    // Which of its generations each sector holds (bit i: sector i matched some candidate).
    let sectors = found.len().div_ceil(SECTOR);
    let mut matched = vec![false; sectors];
    let mut gens_seen = 0;
    let mut older_whole = None;
    let depth = if deep { MAX_GEN - 1 } else { 2 };
    let mut cand = g;
    let mut candidates = Vec::with_capacity(depth as usize + 2);
    candidates.push(g);
    if busy {
        candidates.push(next_gen(g));
    }
    for _ in 0..depth {
        cand = prev_gen(cand);
        candidates.push(cand);
    }
    for &c in &candidates {
        data.fill_block(b, c, scratch);
        let mut any = false;
        let mut all = true;
        for (i, (f, s)) in found.chunks(SECTOR).zip(scratch.chunks(SECTOR)).enumerate() {
            if f == s {
                any = true;
                matched[i] = true;
            } else {
                all = false;
            }
        }
        if all && c != g {
            older_whole = Some(c);
            break;
        }
        gens_seen += usize::from(any);
    }
    if let Some(c) = older_whole {
        return Verdict::Bad(ProblemKind::LostWrite, Some(c));
    }
    if gens_seen >= 2 && matched.iter().all(|&m| m) {
        return Verdict::Bad(ProblemKind::Torn, None);
    }
    Verdict::Bad(ProblemKind::Corrupt, None)
}

/// Reads the region on `threads` threads and checks every block; blocks whose in-flight write
/// landed take that generation in `map`.
pub fn check_region(
    region: &Region,
    data: &RegionData,
    map: &GenMap,
    cancel: &AtomicBool,
    threads: usize,
) -> Result<CheckFigures> {
    let started = Instant::now();
    let unit = data.unit();
    // Chunks never cross from one file of a pool to the next.
    let per_file = region.segment.div_ceil(CHUNK);
    let chunks = per_file * region.files.len() as u64;
    let next = AtomicU64::new(0);
    let deep_left = AtomicU64::new(DEEP_SEARCHES);
    let threads = threads.clamp(1, chunks.max(1) as usize);
    let pool = BufferPool::new(threads, CHUNK as usize, region.align.max(4096) as usize).map_err(Error::pool)?;
    let total = Mutex::new(CheckFigures {
        blocks: data.blocks(),
        lost_write_visible_blocks: data.unique_blocks(),
        ..CheckFigures::default()
    });
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = pool.take();
                let mut scratch = vec![0u8; unit as usize];
                let mut mine = CheckFigures::default();
                loop {
                    if cancel.load(Ordering::Relaxed) || failure.lock().is_ok_and(|f| f.is_some()) {
                        break;
                    }
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks {
                        break;
                    }
                    let (file, within) = ((c / per_file) as usize, c % per_file * CHUNK);
                    let at = file as u64 * region.segment + within;
                    let len = CHUNK.min(region.segment - within) as usize;
                    let slice = &mut buf.as_mut_slice()[..len];
                    if let Err(e) = region.files[file].read_exact_at(slice, region.offset + within) {
                        let what = format!(
                            "reading {len} bytes at offset {} of {}",
                            region.offset + within,
                            region.names[file]
                        );
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(Error::io(what, e));
                        }
                        break;
                    }
                    mine.bytes += len as u64;
                    for (i, found) in slice.chunks_exact(unit as usize).enumerate() {
                        let b = at / unit + i as u64;
                        let byte = map.get(b);
                        if byte & !BUSY == 0 {
                            mine.unknown += 1;
                            continue;
                        }
                        mine.checked += 1;
                        let deep = deep_left.load(Ordering::Relaxed) > 0;
                        match classify(data, b, byte, found, &mut scratch, deep) {
                            Verdict::Good => {
                                mine.good += 1;
                                if byte & BUSY != 0 {
                                    map.set(b, byte & !BUSY);
                                }
                            }
                            Verdict::Landed => {
                                mine.good += 1;
                                mine.landed += 1;
                                map.set(b, next_gen(byte & !BUSY));
                            }
                            Verdict::Bad(kind, found_gen) => {
                                if deep {
                                    deep_left.fetch_sub(1, Ordering::Relaxed);
                                }
                                match kind {
                                    ProblemKind::LostWrite => mine.lost_writes += 1,
                                    ProblemKind::Torn => mine.torn += 1,
                                    ProblemKind::Corrupt => mine.corrupt += 1,
                                }
                                if mine.problems.len() < MAX_PROBLEMS {
                                    mine.problems.push(Problem {
                                        offset: region.place(b * unit).1,
                                        object: (region.files.len() > 1).then(|| region.names[file].clone()),
                                        kind,
                                        expected: byte & !BUSY,
                                        found: found_gen,
                                    });
                                }
                            }
                        }
                    }
                }
                if let Ok(mut t) = total.lock() {
                    t.checked += mine.checked;
                    t.good += mine.good;
                    t.unknown += mine.unknown;
                    t.lost_writes += mine.lost_writes;
                    t.torn += mine.torn;
                    t.corrupt += mine.corrupt;
                    t.landed += mine.landed;
                    t.bytes += mine.bytes;
                    t.problems.extend(mine.problems);
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    let mut t = total.into_inner().unwrap_or_else(|e| e.into_inner());
    t.problems.sort_by(|a, b| (&a.object, a.offset).cmp(&(&b.object, b.offset)));
    t.problems.truncate(MAX_PROBLEMS);
    t.seconds = started.elapsed().as_secs_f64();
    Ok(t)
}
