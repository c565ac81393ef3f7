//! The data model: synthetic bytes with an exact deduplication ratio and an exact compression ratio,
//! chosen independently, as a pure function of (seed, profile, stream, offset).
//!
//! Layout of one stream:
//! - It is cut into blocks of the *dedup unit* U (512 B … 1 MiB). [`dedup::DedupMap`] gives each block a
//!   content id; equal ids mean identical blocks, so the map alone fixes the dedup ratio D.
//! - A block's bytes come from its *block key* = PRF(seed, stream, content id) (a 10-round AES
//!   permutation, so distinct contents always get distinct keys, and seeds s and s+1 share nothing).
//! - Inside a block, every *granule* of min(U, 4 KiB) carries `R ≈ granule / C` bytes of keystream
//!   (4-round AES-CTR under the block key, see [`aes`]) followed by a *filler* that repeats the granule's
//!   own keystream with an odd period `P ≤ R`. Every LZ compressor (gzip's 32 KiB window included) sees
//!   the filler as one match, so each granule compresses to about R bytes and the ratio is C whatever D
//!   is; arrays that compress in 4 KiB+ chunks see the same ratio. The odd period keeps every 512-byte
//!   sector of a block distinct, and the filler is never an all-zero run.
//!
//! - Duplicates may come in aligned *extents* of E bytes (a power of two, U ≤ E ≤ 1 MiB): the dedup map
//!   then places extents, and an extent's blocks are copied together, so an array deduplicating at any
//!   unit from U to E sees D. A *compressibility mix* gives each extent content a class (its ratio),
//!   drawn from a Weyl sequence over content ids, so each class holds its fraction within a few extents
//!   and copies always share their class. E = U without a mix is the plain layout, byte for byte.
//!
//! Because every byte is a function of its position, [`Generator::fill`] gives random access and a
//! streaming [`StreamReader`] gives the same bytes for any chunking; [`Generator::fill_par`] splits a
//! buffer on fixed offsets, so the thread count cannot change the bytes either.

pub mod aes;
pub mod copies;
pub mod dedup;
mod reader;
pub mod region;
pub mod sample;

pub use reader::StreamReader;

use crate::error::Error;
use crate::size::format_size;
use aes::{Block, Kernel, StreamKeys, PRF_ROUNDS, STREAM_ROUNDS};
use copies::{CopySpec, CopyTable};
use dedup::DedupMap;
use rayon::prelude::*;
use std::fmt;
use std::sync::Arc;

/// Smallest dedup unit: one sector.
pub const MIN_UNIT: u64 = 512;
/// Largest dedup unit.
pub const MAX_UNIT: u64 = 1 << 20;
/// Default dedup unit, the granularity most arrays deduplicate at.
pub const DEFAULT_UNIT: u64 = 4096;
/// Compression granule: the filler layout repeats every this many bytes (or every unit, if smaller).
pub const GRANULE: u64 = 4096;
/// Fresh keystream bytes per granule never drop below this, so blocks stay unique (≥ 128 random bits).
pub const MIN_RANDOM: u64 = 16;
/// The largest compress ratio is granule / this (128 for 4 KiB granules, 16 for 512 B units): beyond it
/// the few bytes a compressor spends per match would be a large share of the output.
pub const MIN_COMPRESSED: u64 = 32;
/// Bytes an LZ compressor spends on the filler match (sequence header, literal-length bytes); taken off
/// the keystream share so that the compressed size lands on granule / C rather than just above it.
const MATCH_COST: f64 = 1.5;
/// Largest dedup ratio accepted.
pub const MAX_DEDUP: f64 = 1e6;
/// `fill_par` hands out work in pieces of this size (or one unit, if larger), aligned to the stream.
pub const PAR_PIECE: usize = 256 << 10;

/// Most classes a compressibility mix may have.
pub const MAX_MIX: usize = 8;
/// The dedup extent a compressibility mix gets when none is given: a block's class is its extent's,
/// so chunks up to this size (what arrays compress one by one: 4, 8, 16, 32 KiB) each have one ratio.
pub const MIX_EXTENT: u64 = 32 << 10;

/// One class of a compressibility mix: this fraction of the blocks compresses by this ratio.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct MixClass {
    pub fraction: f64,
    pub ratio: f64,
}

/// A profile's keys as a front end takes them (a workload's `[data]`, `gen`'s flags, Python's
/// arguments, a plugin's `fill-ext`); `None` is "not given". [`Profile::from_keys`] is the one way
/// they become a profile, with the defaults that depend on each other.
#[derive(Clone, Debug, PartialEq)]
pub struct DataKeys {
    /// Absent: 1, or what a histogram of copies implies.
    pub dedup: Option<f64>,
    pub compress: f64,
    pub unit: u64,
    /// Absent: the unit, or [`MIX_EXTENT`] (at least the unit) with a mix.
    pub extent: Option<u64>,
    pub mix: Option<Vec<(f64, f64)>>,
    pub copies: Option<CopySpec>,
}

/// What the data looks like: dedup ratio, compress ratio (or a mix of ratios), dedup unit, dedup
/// extent. Built only through [`Profile::new`] and its `with_…` methods, so every `Profile` is valid.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    dedup: f64,
    compress: f64,
    unit: u64,
    /// Duplicates come in aligned runs of this many bytes (a power of two, unit ≤ extent ≤ 1 MiB).
    extent: u64,
    /// The compressibility mix (`mix_len` classes; 0: every block compresses by `compress`).
    mix: [MixClass; MAX_MIX],
    mix_len: usize,
    /// The duplicate-count distribution (None: every content D copies).
    copies: Option<Arc<CopyTable>>,
}

impl Profile {
    /// Checks the values; errors name the workload key (`data.dedup`, `data.compress`, `data.dedup_unit`).
    pub fn new(dedup: f64, compress: f64, unit: u64) -> Result<Profile, Error> {
        let bad = |key: &'static str, value: String, reason: String| Error::InvalidValue { key, value, reason };
        if !unit.is_power_of_two() || !(MIN_UNIT..=MAX_UNIT).contains(&unit) {
            return Err(bad(
                "data.dedup_unit",
                format!("{unit} B"),
                "must be a power of two from 512 B to 1 MiB".into(),
            ));
        }
        if !dedup.is_finite() || !(1.0..=MAX_DEDUP).contains(&dedup) {
            return Err(bad("data.dedup", dedup.to_string(), "must be a number from 1 to 1000000".into()));
        }
        let granule = unit.min(GRANULE);
        let max_c = (granule / MIN_COMPRESSED) as f64;
        if !compress.is_finite() || compress < 1.0 || compress > max_c {
            return Err(bad(
                "data.compress",
                compress.to_string(),
                format!("must be a number from 1 to {max_c} for a {} dedup unit", format_size(unit)),
            ));
        }
        Ok(Profile {
            dedup,
            compress,
            unit,
            extent: unit,
            mix: [MixClass::default(); MAX_MIX],
            mix_len: 0,
            copies: None,
        })
    }

    /// The profile of `keys`: ratios and unit checked, then the extent (its default depends on the
    /// mix), the mix, the copies. Errors name the workload key.
    pub fn from_keys(keys: DataKeys) -> Result<Profile, Error> {
        let DataKeys { dedup, compress, unit, extent, mix, copies } = keys;
        let mut p = Profile::new(dedup.unwrap_or(1.0), compress, unit)?;
        let extent_default = if mix.is_some() { MIX_EXTENT.max(unit) } else { unit };
        p = p.with_extent(extent.unwrap_or(extent_default))?;
        if let Some(m) = mix {
            p = p.with_mix(&m)?;
        }
        if let Some(spec) = copies {
            p = p.with_copies(spec, dedup.is_some())?;
        }
        Ok(p)
    }

    /// A duplicate-count distribution. A histogram implies the dedup ratio: `dedup_given` says
    /// whether the profile's dedup was the user's, which must then agree within 1 %. Errors name
    /// `data.dedup_copies` (or `data.dedup`).
    pub fn with_copies(mut self, spec: CopySpec, dedup_given: bool) -> Result<Profile, Error> {
        if spec == CopySpec::Even {
            self.copies = None;
            return Ok(self);
        }
        if let Some(implied) = spec.implied_dedup() {
            if dedup_given && (self.dedup / implied - 1.0).abs() > 0.01 {
                return Err(Error::InvalidValue {
                    key: "data.dedup",
                    value: self.dedup.to_string(),
                    reason: format!(
                        "the histogram of data.dedup_copies implies {implied:.4}; give that or leave dedup out"
                    ),
                });
            }
            if !(1.0..=MAX_DEDUP).contains(&implied) {
                return Err(Error::InvalidValue {
                    key: "data.dedup_copies",
                    value: spec.to_string(),
                    reason: format!("implies dedup {implied}, outside 1 … {MAX_DEDUP}"),
                });
            }
            self.dedup = implied;
        }
        self.copies = Some(CopyTable::build(spec, self.dedup)?);
        Ok(self)
    }

    /// Duplicates in aligned runs of `extent` bytes: an array deduplicating at any unit from the dedup
    /// unit up to the extent sees the ratio. Errors name `data.dedup_extent`.
    pub fn with_extent(mut self, extent: u64) -> Result<Profile, Error> {
        if !extent.is_power_of_two() || extent < self.unit || extent > MAX_UNIT {
            return Err(Error::InvalidValue {
                key: "data.dedup_extent",
                value: format_size(extent),
                reason: format!("must be a power of two from the dedup unit ({}) to 1 MiB", format_size(self.unit)),
            });
        }
        self.extent = extent;
        Ok(self)
    }

    /// A compressibility mix: `(fraction, ratio)` classes, fractions summing to 1, each ratio as
    /// `compress` allows; each block's class is drawn (deterministically) for its extent, so chunks up to
    /// the extent compress by their class's ratio. Replaces `compress`, which becomes the ratio the
    /// mix implies for the stream. Errors name `data.compress_mix`.
    pub fn with_mix(mut self, classes: &[(f64, f64)]) -> Result<Profile, Error> {
        let bad = |reason: String| Error::InvalidValue {
            key: "data.compress_mix",
            value: classes.iter().map(|(f, r)| format!("[{f}, {r}]")).collect::<Vec<_>>().join(", "),
            reason,
        };
        if classes.is_empty() || classes.len() > MAX_MIX {
            return Err(bad(format!("must have from 1 to {MAX_MIX} [fraction, ratio] classes")));
        }
        let max_c = (self.unit.min(GRANULE) / MIN_COMPRESSED) as f64;
        let mut sum = 0.0;
        for (i, &(f, r)) in classes.iter().enumerate() {
            if !f.is_finite() || f <= 0.0 || f > 1.0 {
                return Err(bad(format!("class {}: the fraction {f} must be above 0 and at most 1", i + 1)));
            }
            if !r.is_finite() || !(1.0..=max_c).contains(&r) {
                return Err(bad(format!("class {}: the ratio {r} must be from 1 to {max_c}", i + 1)));
            }
            sum += f;
            self.mix[i] = MixClass { fraction: f, ratio: r };
        }
        if (sum - 1.0).abs() > 1e-6 {
            return Err(bad(format!("the fractions add up to {sum}, not 1")));
        }
        self.mix_len = classes.len();
        self.compress = 1.0 / classes.iter().map(|(f, r)| f / r).sum::<f64>();
        Ok(self)
    }

    pub fn dedup(&self) -> f64 {
        self.dedup
    }
    /// The compress ratio; with a mix, the one the mix implies for the whole stream (1 / Σ fᵢ/rᵢ).
    pub fn compress(&self) -> f64 {
        self.compress
    }
    pub fn unit(&self) -> u64 {
        self.unit
    }
    pub fn extent(&self) -> u64 {
        self.extent
    }
    /// The compressibility mix; empty when every block compresses by [`Profile::compress`].
    pub fn mix(&self) -> &[MixClass] {
        &self.mix[..self.mix_len]
    }
    /// The duplicate-count table, when the distribution is not even.
    pub fn copies(&self) -> Option<&CopyTable> {
        self.copies.as_deref()
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile::new(1.0, 1.0, DEFAULT_UNIT).expect("the default profile is valid")
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mix_len == 0 {
            write!(f, "dedup {} compress {} unit {}", self.dedup, self.compress, format_size(self.unit))?;
        } else {
            let classes: Vec<String> = self.mix().iter().map(|c| format!("{}:{}", c.fraction, c.ratio)).collect();
            write!(
                f,
                "dedup {} compress mix {} (stream {:.3}) unit {}",
                self.dedup,
                classes.join(","),
                self.compress,
                format_size(self.unit)
            )?;
        }
        if self.extent != self.unit {
            write!(f, " extent {}", format_size(self.extent))?;
        }
        if let Some(t) = &self.copies {
            match &t.spec {
                CopySpec::Histogram { path, .. } if !path.as_os_str().is_empty() => {
                    write!(f, " copies from {}", path.display())?
                }
                spec => write!(f, " copies {spec}")?,
            }
        }
        Ok(())
    }
}

/// Makes the bytes of any stream of a run. Cheap to clone; shareable across threads.
#[derive(Clone, Debug)]
pub struct Generator {
    seed: u64,
    profile: Profile,
    kernel: Kernel,
    unit: u64,
    granule: usize,
    /// Per compressibility class (one without a mix): keystream bytes at the start of each granule,
    /// and the period of the filler (odd, ≤ the keystream bytes).
    classes: [Class; MAX_MIX],
    /// Class `i` takes extents whose draw (0.64 fixed point) is below `bounds[i]`.
    bounds: [u64; MAX_MIX],
    n_classes: usize,
    /// Blocks per dedup extent.
    per_extent: u64,
    /// Places extents (not blocks): an extent's blocks are copied together.
    dedup: DedupMap,
    prf_keys: [Block; PRF_ROUNDS + 1],
    /// Offsets the class draws, so that seeds differ in where each class falls.
    class_phase: u64,
    /// What makes its bytes what they are (see [`Generator::fingerprint`]), once asked for.
    fingerprint: std::sync::OnceLock<[u8; 32]>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Class {
    random: usize,
    period: usize,
}

impl Class {
    fn new(granule: usize, compress: f64) -> Class {
        let random = if compress == 1.0 {
            granule
        } else {
            ((granule as f64 / compress - MATCH_COST).round() as usize).clamp(MIN_RANDOM as usize, granule)
        };
        Class { random, period: if random % 2 == 1 { random } else { random - 1 } }
    }
}

/// 1 / the plastic number as an odd 0.64 fixed-point Weyl step for the class draws: not the
/// golden ratio the dedup map phases its columns with, so classes do not follow those phases.
const MIX_WEYL: u64 = 0xC13F_A9A9_02A6_328F;

/// Keystream round keys are the block key xor these fixed constants (fractional digits of pi).
const ROUND_TWEAKS: [Block; STREAM_ROUNDS] = [
    [0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344],
    [0xA409_3822_299F_31D0, 0x082E_FA98_EC4E_6C89],
    [0x4528_21E6_38D0_1377, 0xBE54_66CF_34E9_0C6C],
    [0xC0AC_29B7_C97C_50DD, 0x3F84_D5B5_B547_0917],
];

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Generator {
    pub fn new(seed: u64, profile: Profile) -> Generator {
        Self::with_kernel(seed, profile, Kernel::detect())
    }

    /// As [`Generator::new`] with a chosen kernel; the bytes are the same with any kernel.
    pub fn with_kernel(seed: u64, profile: Profile, kernel: Kernel) -> Generator {
        let mut s = seed;
        let prf_keys = std::array::from_fn(|_| [splitmix64(&mut s), splitmix64(&mut s)]);
        let class_phase = splitmix64(&mut s);
        let granule = profile.unit.min(GRANULE) as usize;
        let mut classes = [Class::default(); MAX_MIX];
        let mut bounds = [u64::MAX; MAX_MIX];
        let n_classes = profile.mix_len.max(1);
        if profile.mix_len == 0 {
            classes[0] = Class::new(granule, profile.compress);
        } else {
            let mut cum = 0.0;
            for (i, c) in profile.mix().iter().enumerate() {
                classes[i] = Class::new(granule, c.ratio);
                cum += c.fraction;
                bounds[i] =
                    if i + 1 == profile.mix_len { u64::MAX } else { (cum * 18_446_744_073_709_551_616.0) as u64 };
            }
        }
        let dedup = match &profile.copies {
            None => DedupMap::new(profile.dedup, profile.extent),
            Some(t) => DedupMap::new(profile.dedup, profile.extent).with_table(t.clone()),
        };
        Generator {
            seed,
            kernel,
            unit: profile.unit,
            granule,
            classes,
            bounds,
            n_classes,
            per_extent: profile.extent / profile.unit,
            dedup,
            prf_keys,
            class_phase,
            profile,
            fingerprint: std::sync::OnceLock::new(),
        }
    }

    /// The generator of rank `rank` of `world` ranks: the same seed and profile, its stream's rows
    /// interleaved with the other ranks' (see the dedup map), so each rank's bytes are its own and
    /// deterministic, and the dedup ratio holds over all ranks' data together. Rank 0 of 1 is
    /// [`Generator::new`]'s.
    pub fn for_rank(mut self, rank: u64, world: u64) -> Generator {
        self.dedup = self.dedup.with_lane(rank, world);
        self.fingerprint = std::sync::OnceLock::new();
        self
    }

    /// A digest of everything its bytes depend on — seed, data profile, rank lane — and of nothing
    /// else (not the kernel): two generators with the same fingerprint make the same bytes. Objects'
    /// identities ([`crate::identity`]) are built on it.
    pub fn fingerprint(&self) -> &[u8; 32] {
        self.fingerprint.get_or_init(|| {
            use sha2::{Digest, Sha256};
            let p = &self.profile;
            let mut h = Sha256::new();
            h.update(b"dgen generator 1");
            let (lane, lanes) = self.dedup.lane();
            for v in [self.seed, lane, lanes, p.unit, p.extent, p.dedup.to_bits(), p.compress.to_bits()] {
                h.update(v.to_le_bytes());
            }
            for c in p.mix() {
                h.update(c.fraction.to_bits().to_le_bytes());
                h.update(c.ratio.to_bits().to_le_bytes());
            }
            match p.copies().map(|t| &t.spec) {
                None | Some(CopySpec::Even) => h.update(b"even"),
                Some(CopySpec::Zipf(s)) => {
                    h.update(b"zipf");
                    h.update(s.to_bits().to_le_bytes());
                }
                Some(CopySpec::Histogram { rows, .. }) => {
                    h.update(b"histogram");
                    for (c, b) in rows {
                        h.update(c.to_le_bytes());
                        h.update(b.to_le_bytes());
                    }
                }
            }
            h.finalize().into()
        })
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
    /// Bytes the generator holds beyond its fixed size: a duplicate-count table and its columns.
    pub fn table_bytes(&self) -> usize {
        self.profile.copies().map_or(0, |t| t.bytes()) + self.dedup.column_bytes()
    }

    /// The dedup ratio the first `len` bytes of this generator's stream hold, at the dedup unit,
    /// counted exactly over its whole extents (`None` for a rank's lane of several, or less than
    /// one extent). It is the profile's D wherever the stream is long enough for its copies: a
    /// stream shorter than D rows of 4 MiB, or a distribution of copies whose runs are long next
    /// to the stream's rows on few columns (large extents), holds another.
    pub fn dedup_over(&self, len: u64) -> Option<f64> {
        let extents = len / self.profile.extent;
        let distinct = self.dedup.distinct_in(extents).filter(|&d| d > 0)?;
        Some(extents as f64 / distinct as f64)
    }

    /// Keystream round keys of one content of one stream.
    #[inline]
    fn block_keys(&self, stream: u64, content: u64) -> StreamKeys {
        let k = aes::prf(self.kernel, &self.prf_keys, [content, stream]);
        let mut keys = [k; STREAM_ROUNDS + 1];
        for (key, tweak) in keys[1..].iter_mut().zip(ROUND_TWEAKS) {
            *key = [k[0] ^ tweak[0], k[1] ^ tweak[1]];
        }
        keys
    }

    /// Writes bytes `[offset, offset + buf.len())` of stream `stream` into `buf`, on this thread.
    pub fn fill(&self, stream: u64, offset: u64, buf: &mut [u8]) {
        let mut pos = offset;
        let mut out = buf;
        while !out.is_empty() {
            let block = pos / self.unit;
            let start = (pos % self.unit) as usize;
            let n = (self.unit as usize - start).min(out.len());
            let (head, rest) = out.split_at_mut(n);
            let (content, class) = self.content(block);
            let keys = self.block_keys(stream, content);
            self.fill_block(&keys, &self.classes[class], start, head);
            out = rest;
            pos += n as u64;
        }
    }

    /// Block `block`'s content id (equal ids, equal bytes) and compressibility class. An extent's
    /// blocks share its placement and its class; their ids are the extent's id times the blocks per
    /// extent plus their place in it, so with one block per extent the id is the extent's.
    #[inline]
    fn content(&self, block: u64) -> (u64, usize) {
        let extent = self.dedup.content(block / self.per_extent);
        let content = extent * self.per_extent + block % self.per_extent;
        if self.n_classes == 1 {
            return (content, 0);
        }
        // A Weyl draw per extent content: classes take their fractions of any run of consecutive
        // ids within a few ids (low discrepancy), which is what the dedup map hands out.
        let draw = (extent.wrapping_add(1)).wrapping_mul(MIX_WEYL).wrapping_add(self.class_phase);
        let class = self.bounds[..self.n_classes - 1].iter().take_while(|&&b| draw >= b).count();
        (content, class)
    }

    /// As [`Generator::fill`], split across the current rayon pool in pieces aligned to the stream (so the
    /// result does not depend on the thread count).
    pub fn fill_par(&self, stream: u64, offset: u64, buf: &mut [u8]) {
        let piece = PAR_PIECE.max(self.unit as usize);
        if buf.len() <= piece || rayon::current_num_threads() == 1 {
            return self.fill(stream, offset, buf);
        }
        let head_len = ((piece as u64 - offset % piece as u64) % piece as u64) as usize;
        let head_len = head_len.min(buf.len());
        let (head, rest) = buf.split_at_mut(head_len);
        self.fill(stream, offset, head);
        let base = offset + head_len as u64;
        rest.par_chunks_mut(piece)
            .enumerate()
            .for_each(|(i, chunk)| self.fill(stream, base + (i * piece) as u64, chunk));
    }

    /// A reader over bytes `[0, len)` of `stream`.
    pub fn reader(&self, stream: u64, len: u64) -> StreamReader {
        StreamReader::new(self.clone(), stream, len)
    }

    /// Bytes `[start, start + out.len())` of one block (`start + out.len() ≤ unit`).
    fn fill_block(&self, keys: &StreamKeys, class: &Class, start: usize, out: &mut [u8]) {
        if class.random == self.granule {
            // Incompressible: the block is its keystream.
            return aes::keystream(self.kernel, keys, start as u64, out);
        }
        let g = self.granule;
        let mut pos = start;
        let mut out = out;
        while !out.is_empty() {
            let g_start = pos / g * g;
            let within = pos - g_start;
            let n = (g - within).min(out.len());
            let (head, rest) = out.split_at_mut(n);
            if n == g {
                self.fill_granule(keys, class, g_start, head);
            } else {
                let mut tmp = [0u8; GRANULE as usize];
                self.fill_granule(keys, class, g_start, &mut tmp[..g]);
                head.copy_from_slice(&tmp[within..within + n]);
            }
            out = rest;
            pos += n;
        }
    }

    /// One whole granule starting at block offset `g_start`: keystream, then the periodic filler.
    #[inline]
    fn fill_granule(&self, keys: &StreamKeys, class: &Class, g_start: usize, out: &mut [u8]) {
        let (r, p) = (class.random, class.period);
        aes::keystream(self.kernel, keys, g_start as u64, &mut out[..r]);
        let mut q = r;
        while q < out.len() {
            let n = p.min(out.len() - q);
            out.copy_within(q - p..q - p + n, q);
            q += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_repeats_with_the_odd_period() {
        let g = Generator::new(1, Profile::new(1.0, 3.0, 4096).unwrap());
        let mut b = vec![0u8; 4096];
        g.fill(0, 0, &mut b);
        let c = g.classes[0];
        assert_eq!(c.random, 1364);
        assert_eq!(c.period, 1363);
        for i in c.random..4096 {
            assert_eq!(b[i], b[i - c.period]);
        }
    }

    #[test]
    fn profile_rejects_bad_values() {
        assert!(Profile::new(0.99, 1.0, 4096).is_err());
        assert!(Profile::new(f64::NAN, 1.0, 4096).is_err());
        assert!(Profile::new(1.0, 0.5, 4096).is_err());
        assert!(Profile::new(1.0, 129.0, 4096).is_err());
        assert!(Profile::new(1.0, 17.0, 512).is_err());
        assert!(Profile::new(1.0, 1.0, 3000).is_err());
        assert!(Profile::new(1.0, 1.0, 256).is_err());
        assert!(Profile::new(1.0, 1.0, 2 << 20).is_err());
        assert!(Profile::new(7.3, 128.0, 1 << 20).is_ok());
        assert!(Profile::new(7.3, 16.0, 512).is_ok());
    }
}
