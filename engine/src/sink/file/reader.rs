//! An object read back from a file: `pread` or reads through the sink's ring, the page-cache share
//! it had when opened, its identity.

use super::uring::{self};
use crate::error::{Error, Result};
use crate::object::identity::Identity;
use crate::sink::ObjectReader;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

pub(super) struct FileReader {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) size: u64,
    pub(super) identity: Option<Identity>,
    /// The share of its pages in the page cache once opened (O_DIRECT: none are used).
    pub(super) cached: Option<f64>,
    /// The sink's ring, when it writes with io_uring: reads go through it too.
    pub(super) ring: Option<uring::RingReads>,
}

/// The share of `file`'s pages resident in the page cache (`mincore` over a read-only mapping).
/// Files over 16 GiB are sampled: 64 windows of 256 MiB spread over them.
pub(super) fn resident_share(file: &File, size: u64) -> Option<f64> {
    const WINDOW: u64 = 256 << 20;
    const MAX_WINDOWS: u64 = 64;
    if size == 0 {
        return Some(0.0);
    }
    // SAFETY: plain sysconf query.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    };
    let windows = size.div_ceil(WINDOW);
    let step = windows.div_ceil(MAX_WINDOWS).max(1);
    let (mut resident, mut pages) = (0u64, 0u64);
    let mut vec = Vec::new();
    let mut w = 0;
    while w < windows {
        let off = w * WINDOW;
        let len = WINDOW.min(size - off) as usize;
        // SAFETY: a fresh read-only shared mapping of our own open file, within its size; it is only
        // passed to mincore (never dereferenced) and unmapped before returning.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), off as i64)
        };
        if addr == libc::MAP_FAILED {
            return None;
        }
        let n = len.div_ceil(page as usize);
        vec.resize(n, 0u8);
        // SAFETY: `addr` is page-aligned and maps `len` bytes; `vec` has one byte per page.
        let rc = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(addr, len) };
        if rc != 0 {
            return None;
        }
        resident += vec.iter().filter(|&&b| b & 1 == 1).count() as u64;
        pages += n as u64;
        w += step;
    }
    Some(resident as f64 / pages.max(1) as f64)
}

impl ObjectReader for FileReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn cached_fraction(&self) -> Option<f64> {
        self.cached
    }

    fn identity(&self) -> Option<Identity> {
        self.identity
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        // At the end without a syscall: O_DIRECT would refuse the unaligned offset a short read leaves.
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        if let Some(ring) = &self.ring {
            if let Some(r) = ring.read(self.file.as_raw_fd(), offset, buf) {
                return r.map_err(|e| Error::io(&self.path, e));
            }
        }
        loop {
            match nix::sys::uio::pread(&self.file, buf, offset as i64) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::io(&self.path, io::Error::from(e))),
            }
        }
    }
}
