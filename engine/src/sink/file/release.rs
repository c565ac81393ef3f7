//! Closing what is slow to close after the process has ended, so that Ctrl-C is felt at once.
//!
//! The last `close` of an unlinked file frees its blocks and its page cache on the spot: for an
//! aborted temporary holding gigabytes of freshly written pages that takes seconds (2 s for 13 GB
//! on the build machine), and a process exiting closes its files before its parent sees it end.
//! So an aborted temporary's descriptor is kept here instead, and when the process is done,
//! [`close_in_background`] forks one child that holds nothing else (every other descriptor closed,
//! in a session of its own), closes them there, and exits; the process itself ends at once. The
//! space is free a moment later, without anyone waiting for it. Only a process that says it will
//! end ([`close_late`], the CLI) keeps them: a library caller that lives on (Python) closes as
//! usual, so nothing is held past its use.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Files at least this large are worth a child.
const WORTH_IT: u64 = 256 << 20;

static LATE: Mutex<Vec<Arc<File>>> = Mutex::new(Vec::new());

/// Whether this process closes late (only one that calls [`close_in_background`] as it ends: a
/// library caller that lives on, such as Python, closes as usual).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Asks for large aborted temporaries to be kept until [`close_in_background`]; the caller
/// promises to call it as the process ends.
pub fn close_late() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Keeps `file` (already unlinked) to be closed by [`close_in_background`], if it is large enough
/// for its close to be felt; a small one is closed as usual.
pub(crate) fn defer(file: &Arc<File>) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let big = file.metadata().is_ok_and(|m| m.len() >= WORTH_IT);
    if big {
        LATE.lock().unwrap_or_else(|e| e.into_inner()).push(file.clone());
    }
}

/// Closes the files kept by [`defer`] in a child process, so the caller can exit now. Call it as
/// the process ends, having called [`close_late`] (the command-line tool does both).
pub fn close_in_background() {
    let files = std::mem::take(&mut *LATE.lock().unwrap_or_else(|e| e.into_inner()));
    if files.is_empty() {
        return;
    }
    let mut fds: Vec<libc::c_int> = files.iter().map(|f| f.as_raw_fd()).collect();
    fds.sort_unstable();
    fds.dedup();
    // SAFETY: the child only makes async-signal-safe calls (setsid, close_range, close, _exit) on
    // data prepared before the fork, then exits without unwinding.
    unsafe {
        if libc::fork() == 0 {
            libc::setsid();
            let mut lo: libc::c_uint = 0;
            for &fd in &fds {
                let fd = fd as libc::c_uint;
                if fd > lo {
                    libc::syscall(libc::SYS_close_range, lo, fd - 1, 0);
                }
                lo = fd + 1;
            }
            libc::syscall(libc::SYS_close_range, lo, libc::c_uint::MAX, 0);
            for &fd in &fds {
                libc::close(fd);
            }
            libc::_exit(0);
        }
    }
    // The child holds them now (or, had the fork failed, this is the last close, as before).
    drop(files);
}
