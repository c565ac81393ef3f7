//! The generation map on disk, written ahead of the writes it covers, so that a read-back after a
//! crash (kill -9, a power cut) knows what every block must hold.
//!
//! Layout: a 4 KiB header (magic, the region it belongs to — its identity, offset, size and block —
//! and a CRC of the header), then one byte per block, as the in-memory map keeps it: the generation
//! and a bit saying a write to the next one may be in flight.
//!
//! The protocol, per write of blocks `[b, b + n)` at generation `g → g + 1`:
//! 1. *intent*: their bytes become `g | IN_FLIGHT` and are made durable (one `msync` per batch of
//!    writes a ring submits, before it submits them);
//! 2. the write is issued and acknowledged;
//! 3. *confirm*: their bytes become `g + 1` — at once for O_DIRECT writes, after the next `fsync`
//!    of the file for buffered ones (an acknowledged buffered write is not yet on storage).
//!
//! So after any crash, a block whose byte has `IN_FLIGHT` holds `g` or `g + 1` (the write landed or
//! not; the read-back accepts both and records which), and any other holds exactly its generation:
//! an older one is a **lost write**. fio's `verify_state_save` keeps only the last offsets written
//! per job, vdbench's journal every write synchronously; this is exact for every block at the cost
//! of one `msync` per submitted batch. The map itself is memory-mapped: a kill -9 loses nothing of
//! it (its pages are the page cache's).

use super::genmap::GenMap;
use crate::error::{Error, Result};
use crate::object::identity::Identity;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Bytes before the map.
pub const HEADER: u64 = 4096;
const MAGIC: &[u8; 8] = b"DGENJRN1";

/// What a journal says it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalKey {
    pub region: Identity,
    pub offset: u64,
    pub size: u64,
    pub unit: u64,
}

impl JournalKey {
    fn header(&self) -> Vec<u8> {
        let mut h = vec![0u8; HEADER as usize];
        h[..8].copy_from_slice(MAGIC);
        h[8..40].copy_from_slice(&self.region.stored().as_bytes()[6..38]);
        h[40..48].copy_from_slice(&self.offset.to_le_bytes());
        h[48..56].copy_from_slice(&self.size.to_le_bytes());
        h[56..64].copy_from_slice(&self.unit.to_le_bytes());
        let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &h[..64]) as u32;
        h[64..68].copy_from_slice(&crc.to_le_bytes());
        h
    }
}

/// An open journal, its map mapped in.
pub struct Journal {
    file: File,
    path: String,
    map: *mut u8,
    len: usize,
    blocks: u64,
    /// Intents are made durable before the writes they cover go out.
    durable: bool,
    /// Intents were recorded since the last flush.
    dirty: AtomicBool,
}

// SAFETY: the mapping is shared memory written byte by byte through atomics (see `cell`); the
// pointer stays valid until drop.
unsafe impl Send for Journal {}
unsafe impl Sync for Journal {}

impl Drop for Journal {
    fn drop(&mut self) {
        // SAFETY: `map` is the mapping of `len` bytes made in `open`, not used after this.
        unsafe {
            libc::msync(self.map.cast(), self.len, libc::MS_SYNC);
            libc::munmap(self.map.cast(), self.len);
        }
    }
}

/// What opening a journal found.
pub enum Found {
    /// It belongs to this region: the map it holds.
    Map(GenMap),
    /// It is new, or belongs to another region (now reset to this one's): nothing known.
    Fresh,
}

impl Journal {
    /// Opens the journal in `file` (already checked to be the engine's) for the region `key` of
    /// `blocks` blocks. In `keep` mode (a read-back only) one of another region is an error; else
    /// it is reset.
    pub fn open(
        file: File,
        path: String,
        key: &JournalKey,
        blocks: u64,
        durable: bool,
        keep: bool,
    ) -> Result<(Journal, Found)> {
        let len = (HEADER + blocks) as usize;
        let io = |e: std::io::Error| Error::io(&path, e);
        let mut head = vec![0u8; HEADER as usize];
        let size = file.metadata().map_err(io)?.len();
        let want = key.header();
        let ours = size >= len as u64 && {
            use std::os::unix::fs::FileExt;
            file.read_exact_at(&mut head, 0).is_ok() && head[..68] == want[..68]
        };
        if !ours {
            if keep {
                let what = if size == 0 || !head.starts_with(MAGIC) {
                    "is not a journal of this engine"
                } else {
                    "is the journal of another region (another object, size, block or data)"
                };
                return Err(Error::NotFound { target: path, message: what.into(), source: None });
            }
            file.set_len(0).map_err(io)?;
            file.set_len(len as u64).map_err(io)?;
            use std::os::unix::fs::FileExt;
            file.write_all_at(&want, 0).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        // SAFETY: a shared, read-write mapping of `len` bytes of a file at least that long.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io(std::io::Error::last_os_error()));
        }
        let j = Journal { file, path, map: map.cast(), len, blocks, durable, dirty: AtomicBool::new(false) };
        let found = if ours {
            let bytes: Vec<u8> = (0..blocks).map(|b| j.cell(b).load(Ordering::Relaxed)).collect();
            Found::Map(GenMap::from_bytes(&bytes))
        } else {
            Found::Fresh
        };
        Ok((j, found))
    }

    fn cell(&self, b: u64) -> &AtomicU8 {
        debug_assert!(b < self.blocks);
        // SAFETY: within the mapping (HEADER + b < len); AtomicU8 has the layout of u8, and every
        // access to the map goes through these atomics.
        unsafe { &*(self.map.add((HEADER + b) as usize) as *const AtomicU8) }
    }

    /// Step 1: blocks `[first, first + n)` may be written to the generation after `gens[i]`.
    pub fn intent(&self, first: u64, gens: impl Iterator<Item = u8>) {
        for (i, g) in gens.enumerate() {
            self.cell(first + i as u64).store(g | super::genmap::BUSY, Ordering::Relaxed);
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Makes the intents recorded so far durable (before the writes they cover are submitted).
    pub fn flush(&self) -> std::io::Result<()> {
        if !self.durable || !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        // SAFETY: the mapping made in `open`.
        if unsafe { libc::msync(self.map.cast(), self.len, libc::MS_SYNC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Step 3: block `b` holds generation `g` now (or is not known: 0).
    pub fn confirm(&self, b: u64, g: u8) {
        self.cell(b).store(g, Ordering::Relaxed);
    }

    /// Writes the whole map, durably (after a prefill, or a read-back that settled blocks whose
    /// writes were in flight).
    pub fn store(&self, map: &GenMap) -> Result<()> {
        for b in 0..self.blocks.min(map.len()) {
            self.cell(b).store(map.get(b), Ordering::Relaxed);
        }
        self.dirty.store(false, Ordering::Release);
        // SAFETY: the mapping made in `open`.
        if unsafe { libc::msync(self.map.cast(), self.len, libc::MS_SYNC) } < 0 {
            return Err(Error::io(&self.path, std::io::Error::last_os_error()));
        }
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}
