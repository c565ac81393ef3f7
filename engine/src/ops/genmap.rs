//! Each block's generation: one byte per block of the region (7 bits of generation, the eighth
//! marking a write in flight), what vdbench keeps for its data validation.
//!
//! A write claims its blocks before it is issued (so two writes never race for one block, and the
//! map always knows which generation a block must hold) and stores their new generation once the
//! write is acknowledged. A block whose claim fails is busy: the picker chooses another offset.

use crate::generator::region::next_gen;
use std::sync::atomic::{AtomicU8, Ordering};

/// The bit of a block whose write is in flight.
pub const BUSY: u8 = 0x80;

pub struct GenMap {
    cells: Box<[AtomicU8]>,
}

impl GenMap {
    /// A map of `blocks` blocks, all at generation `g` (0: not known).
    pub fn new(blocks: u64, g: u8) -> GenMap {
        GenMap { cells: (0..blocks).map(|_| AtomicU8::new(g)).collect() }
    }

    /// A map from stored bytes (a journal's), with in-flight marks kept as they are.
    pub fn from_bytes(bytes: &[u8]) -> GenMap {
        GenMap { cells: bytes.iter().map(|&b| AtomicU8::new(b)).collect() }
    }

    pub fn len(&self) -> u64 {
        self.cells.len() as u64
    }
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The byte of block `b` (generation and busy bit).
    pub fn get(&self, b: u64) -> u8 {
        self.cells[b as usize].load(Ordering::Acquire)
    }

    pub fn set(&self, b: u64, g: u8) {
        self.cells[b as usize].store(g, Ordering::Release);
    }

    /// Claims blocks `[first, first + n)` for a write: all or none. On success the new generation of
    /// each is what `release` will store (their current one, next).
    pub fn claim(&self, first: u64, n: u64) -> bool {
        for b in first..first + n {
            let c = &self.cells[b as usize];
            let v = c.load(Ordering::Relaxed);
            if v & BUSY != 0 || c.compare_exchange(v, v | BUSY, Ordering::Acquire, Ordering::Relaxed).is_err() {
                for r in first..b {
                    self.cells[r as usize].fetch_and(!BUSY, Ordering::Release);
                }
                return false;
            }
        }
        true
    }

    /// The generation block `b` takes with the write that claimed it.
    pub fn pending(&self, b: u64) -> u8 {
        next_gen(self.get(b) & !BUSY)
    }

    /// Ends a write's claim: the blocks hold `pending` now (written), or what they held (the write
    /// failed and they are unknown: 0), or `to` (a trim: 0).
    pub fn release(&self, first: u64, n: u64, outcome: Release) {
        for b in first..first + n {
            let c = &self.cells[b as usize];
            let v = c.load(Ordering::Relaxed) & !BUSY;
            let new = match outcome {
                Release::Written => next_gen(v),
                Release::Unknown => 0,
            };
            c.store(new, Ordering::Release);
        }
    }
}

/// How a claim ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    Written,
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_exclude_each_other_and_release_advances_the_generation() {
        let m = GenMap::new(8, 1);
        assert!(m.claim(2, 3));
        assert!(!m.claim(4, 2), "block 4 is busy");
        assert!(m.claim(5, 2), "a failed claim gives back what it took");
        assert_eq!(m.pending(3), 2);
        m.release(2, 3, Release::Written);
        assert_eq!((m.get(2), m.get(4), m.get(5)), (2, 2, 1 | BUSY));
        m.release(5, 2, Release::Unknown);
        assert_eq!(m.get(5), 0);
    }
}
