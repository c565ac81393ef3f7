//! Temporary names: an object is written under `.NAME.dgen-tmp.HOST.PID.N` and renamed when whole;
//! temporaries left by processes of this host that are gone are swept by the next run.

use super::*;
use std::fs::{self};
use std::path::Path;
use std::sync::atomic::Ordering;

/// This host, as 8 hex digits in temporary names: a temporary is only ever swept by a process of the
/// host that made it (a target root on shared storage is written by many hosts at once).
pub(super) fn host_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        // FNV-1a: stable across builds and machines, unlike std's hasher.
        let h = host.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        format!("{:08x}", h as u32)
    })
}

/// `.NAME.dgen-tmp.HOST.PID.N`, with NAME cut (at a character boundary) so the whole is at most
/// `name_max` bytes.
pub(super) fn temp_name(file_name: &str, name_max: usize) -> String {
    let suffix =
        format!(".dgen-tmp.{}.{}.{}", host_tag(), std::process::id(), TMP_COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut keep = name_max.saturating_sub(1 + suffix.len()).min(file_name.len());
    while !file_name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(".{}{suffix}", &file_name[..keep])
}

/// The pid in a temporary name of this host, if `name` is one.
pub(super) fn temp_owner(name: &str) -> Option<i32> {
    let mut parts = name.rsplitn(5, '.');
    let (_n, pid, host, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let tag_ok = tag.ends_with("dgen-tmp") && name.starts_with('.');
    (tag_ok && host == host_tag()).then(|| pid.parse().ok()).flatten()
}

/// Removes temporaries under `root` (the whole tree when `tree`, else `root` itself) whose process is
/// gone; returns how many.
pub(super) fn sweep_stale(root: &Path, tree: bool) -> usize {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                if tree {
                    dirs.push(e.path());
                }
                continue;
            }
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(temp_owner) else { continue };
            let gone = pid > 0
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH);
            if gone && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// Whether a file name is one of our temporaries (an object not yet complete) or probe files.
pub(super) fn is_temporary(file_name: &str) -> bool {
    file_name.starts_with('.')
        && (file_name.contains(".dgen-tmp.")
            || file_name.starts_with(".dgen-dio-probe.")
            || file_name.starts_with(".dgen-xattr-probe."))
}
