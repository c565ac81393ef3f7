//! What the file system under a root can do, found once by trying on small probe files: buffered
//! writes that skip the page cache, user extended attributes, the direct-I/O alignment, the longest
//! file name.

use super::beneath::{self, Root};
use super::*;
use crate::error::{Error, Result};
use crate::object::identity::Identity;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;

/// Whether buffered writes with `RWF_DONTCACHE` work under `dir` (kernel and file system), tried on
/// a small probe file.
pub(super) fn uncached_supported(dir: &Path) -> Result<bool> {
    let probe = dir.join(format!(".dgen-uncached-probe.{}", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&probe)
        .map_err(|e| Error::io(&probe, e))?;
    let r = pwrite_flags(&file, &[0u8; 4096], 0, RWF_DONTCACHE);
    let _ = fs::remove_file(&probe);
    match r {
        Ok(_) => Ok(true),
        // Older kernels reject the unknown flag; file systems without support say so.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)) => Ok(false),
        Err(e) => Err(Error::io(&probe, e)),
    }
}

/// Whether files under the root keep user extended attributes (where identities are stamped),
/// tried on a small probe file.
pub(super) fn xattr_supported(dirs: &Root, root: &Path) -> Result<bool> {
    let dir = dirs.dir("", false).map_err(|e| Error::io(root, e))?;
    let probe = format!(".dgen-xattr-probe.{}.{}", std::process::id(), TMP_COUNTER.fetch_add(1, Ordering::Relaxed));
    let file = beneath::create_new(&dir, &probe, 0).map_err(|e| Error::io(root.join(&probe), e))?;
    let id = Identity::parse(b"dgen1:00000000000000000000000000000000").expect("a valid identity");
    let r = beneath::set_identity(&file, &id);
    let _ = beneath::unlink_in(&dir, &probe);
    r.map_err(|e| Error::io(root.join(&probe), e))
}

/// NAME_MAX of the file system under `dir` (255 where it cannot be asked).
pub(super) fn name_max(dir: &Path) -> usize {
    nix::unistd::pathconf(dir, nix::unistd::PathconfVar::NAME_MAX)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n >= 14)
        .unwrap_or(255)
}

/// The direct-I/O alignment of files under `dir`, found by making a small probe file there.
pub(super) fn direct_alignment(dir: &Path) -> Result<usize> {
    let probe = dir.join(format!(".dgen-dio-probe.{}", std::process::id()));
    let file = OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(&probe);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Err(Error::io(dir, io::Error::other("the file system does not support O_DIRECT")))
        }
        Err(e) => return Err(Error::io(&probe, e)),
    };
    let _ = fs::remove_file(&probe);
    // SAFETY: statx fills the zeroed struct; AT_EMPTY_PATH with "" queries the open fd.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::statx(file.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_DIOALIGN, &mut stx) };
    let align = if rc == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0 {
        (stx.stx_dio_mem_align.max(stx.stx_dio_offset_align) as usize).max(512)
    } else {
        // Kernels before 6.1 do not report it; 4 KiB satisfies every common device.
        4096
    };
    Ok(align.next_power_of_two())
}
