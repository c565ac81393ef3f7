//! The bytes of a region written in place: block `b` after its `g`-th write, as a pure function of
//! (seed, profile, region stream, b, g), such that the *live* region holds the profile's dedup and
//! compression ratios exactly at every moment, whatever sequence of overwrites it has seen.
//!
//! Why this shape. A dedup ratio is a count of distinct contents among the live blocks. A single
//! block rewritten on its own removes one occurrence of its old content and adds one of its new
//! content; the count stays exact only if either both are shared (the old content still lives
//! elsewhere and the new one already does) or both are unique. A pure function of (b, g) cannot know
//! what other blocks hold now, so the only exact rule is vdbench's: a block whose content the region
//! holds in several copies keeps that content at every generation (rewriting it rewrites the same
//! bytes), and a block whose content is unique gets fresh content at every generation. The distinct
//! count is then the same after any overwrite sequence as after the prefill: exactly what the dedup
//! map gives the region (`N / D` for an even profile over a region of at least D rows). The
//! compressibility class belongs to the block's place, never to its generation, so C holds too.
//!
//! The price is what verification can see: a lost write to a shared block leaves the same bytes as
//! the write would have, so it is invisible; lost writes are found on unique blocks only. The share
//! of blocks where they can be found is reported ([`RegionData::unique_blocks`]); a dedup profile with
//! a distribution of copies (zipf, a histogram) has unique blocks, an even D ≥ 2 has none.
//!
//! Generations are 1 … [`MAX_GEN`] and wrap to 1 (generation 0 means "not known": never written by
//! the engine, or trimmed); a lost write exactly a multiple of `MAX_GEN` writes behind cannot be
//! told from a good one.

use super::Generator;

/// The largest generation; the map keeps 7 bits per block (the eighth marks a write in flight).
pub const MAX_GEN: u8 = 127;

/// The generation that follows `g` (1 … MAX_GEN, wrapping to 1; from 0, 1).
pub fn next_gen(g: u8) -> u8 {
    if g >= MAX_GEN {
        1
    } else {
        g + 1
    }
}

/// The generation before `g` (from 1, MAX_GEN).
pub fn prev_gen(g: u8) -> u8 {
    if g <= 1 {
        MAX_GEN
    } else {
        g - 1
    }
}

/// What makes the bytes of one region.
#[derive(Clone, Debug)]
pub struct RegionData {
    gen: Generator,
    /// The region's stream (below 2^56: the top byte takes the generation).
    stream: u64,
    blocks: u64,
    /// Extents in the region (its blocks / the blocks per extent).
    extents: u64,
}

impl RegionData {
    /// The region of `blocks` dedup units named by `stream` (any value; its low 56 bits are kept).
    /// `blocks` is a multiple of the profile's blocks per extent (checked by the caller).
    pub fn new(gen: Generator, stream: u64, blocks: u64) -> RegionData {
        let extents = blocks / gen.per_extent;
        RegionData { stream: stream & ((1 << 56) - 1), blocks, extents, gen }
    }

    pub fn generator(&self) -> &Generator {
        &self.gen
    }
    pub fn unit(&self) -> u64 {
        self.gen.unit
    }
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Whether block `b`'s content lives in other blocks of the region too (then its bytes are the
    /// same at every generation).
    pub fn is_shared(&self, b: u64) -> bool {
        let e = b / self.gen.per_extent;
        let cols = self.gen.dedup.cols;
        let id = self.gen.dedup.content(e);
        // A content's copies are consecutive rows of one column of the dedup map.
        (e >= cols && self.gen.dedup.content(e - cols) == id)
            || (e + cols < self.extents && self.gen.dedup.content(e + cols) == id)
    }

    /// Bytes of block `b` at generation `g` (≥ 1) into `out` (one unit long).
    pub fn fill_block(&self, b: u64, g: u8, out: &mut [u8]) {
        debug_assert_eq!(out.len() as u64, self.gen.unit);
        let (content, class) = self.gen.content(b);
        let stream = if self.is_shared(b) { self.stream } else { self.stream | (u64::from(g.max(1)) << 56) };
        let keys = self.gen.block_keys(stream, content);
        self.gen.fill_block(&keys, &self.gen.classes[class], 0, out);
    }

    /// Distinct contents the region holds at any moment (after its first whole write): exact.
    pub fn distinct(&self) -> u64 {
        self.gen.dedup.distinct_in(self.extents).unwrap_or(self.extents) * self.gen.per_extent
    }

    /// Blocks whose content is theirs alone (where a lost write can be seen). O(blocks / extent).
    pub fn unique_blocks(&self) -> u64 {
        (0..self.extents).filter(|&e| !self.is_shared(e * self.gen.per_extent)).count() as u64 * self.gen.per_extent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::copies::CopySpec;
    use crate::generator::Profile;
    use std::collections::HashMap;

    fn live_distinct(r: &RegionData, gens: &[u8]) -> usize {
        let mut seen = HashMap::new();
        let mut buf = vec![0u8; r.unit() as usize];
        for (b, &g) in gens.iter().enumerate() {
            r.fill_block(b as u64, g, &mut buf);
            *seen.entry(xxhash_rust::xxh3::xxh3_128(&buf)).or_insert(0u32) += 1;
        }
        seen.len()
    }

    #[test]
    fn the_live_region_keeps_its_distinct_count_under_any_overwrites() {
        for (profile, label) in [
            (Profile::new(3.0, 2.0, 8192).unwrap(), "even 3"),
            (Profile::new(1.0, 1.0, 4096).unwrap(), "none"),
            (Profile::new(2.0, 1.0, 4096).unwrap().with_copies(CopySpec::Zipf(1.5), true).unwrap(), "zipf"),
        ] {
            let unit = profile.unit();
            let blocks = (48u64 << 20) / unit;
            let r = RegionData::new(Generator::new(7, profile), 0xabc, blocks);
            let mut gens = vec![1u8; blocks as usize];
            let first = live_distinct(&r, &gens);
            assert_eq!(first as u64, r.distinct(), "{label}");
            let mut x = 12345u64;
            for _ in 0..3 * blocks {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let b = ((x >> 33) % blocks) as usize;
                gens[b] = next_gen(gens[b]);
            }
            assert_eq!(live_distinct(&r, &gens), first, "{label}: overwrites changed the distinct count");
        }
    }

    #[test]
    fn unique_blocks_change_with_their_generation_and_shared_ones_do_not() {
        let profile = Profile::new(2.0, 1.0, 4096).unwrap().with_copies(CopySpec::Zipf(1.5), true).unwrap();
        let r = RegionData::new(Generator::new(1, profile), 5, (32 << 20) / 4096);
        let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
        let (mut unique, mut shared) = (0, 0);
        for blk in 0..r.blocks() {
            r.fill_block(blk, 1, &mut a);
            r.fill_block(blk, 2, &mut b);
            if r.is_shared(blk) {
                assert_eq!(a, b);
                shared += 1;
            } else {
                assert_ne!(a, b);
                unique += 1;
            }
        }
        assert!(unique > 0 && shared > 0);
        assert_eq!(r.unique_blocks(), unique);
        assert_eq!(next_gen(MAX_GEN), 1);
        assert_eq!(prev_gen(1), MAX_GEN);
    }
}
