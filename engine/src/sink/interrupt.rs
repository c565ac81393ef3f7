//! What an interrupted process must not leave behind, known from any thread: the temporaries of
//! files being written (removed at once, from wherever Ctrl-C is handled) and how many uploads are
//! open (only their writers can abort those, with requests to the store). The CLI's Ctrl-C handler
//! uses this when the run does not end by itself within a second — a compressor or a write that
//! blocks for seconds — to remove the temporaries and end, unless an upload still has to be aborted.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// (id, its directory, its name) of every temporary being written.
static TEMPS: Mutex<Vec<(u64, OwnedFd, String)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static UPLOADS: AtomicUsize = AtomicUsize::new(0);

/// Records a temporary `name` in `dir` while it is written; `None` if its directory could not be
/// held (it is then only removed by its writer).
pub(crate) fn temp_opened(dir: &impl AsFd, name: &str) -> Option<u64> {
    let dir = dir.as_fd().try_clone_to_owned().ok()?;
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    TEMPS.lock().unwrap_or_else(|e| e.into_inner()).push((id, dir, name.to_string()));
    Some(id)
}

/// The temporary is gone (renamed whole, or removed by its writer).
pub(crate) fn temp_closed(id: u64) {
    TEMPS.lock().unwrap_or_else(|e| e.into_inner()).retain(|(i, _, _)| *i != id);
}

/// Removes every temporary still being written; how many were removed.
pub fn remove_temporaries() -> usize {
    let temps = std::mem::take(&mut *TEMPS.lock().unwrap_or_else(|e| e.into_inner()));
    temps
        .iter()
        .filter(|(_, dir, name)| {
            nix::unistd::unlinkat(dir, name.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir).is_ok()
        })
        .count()
}

/// An upload being written: counted while it lives.
pub(crate) struct OpenUpload(());

impl OpenUpload {
    pub(crate) fn new() -> OpenUpload {
        UPLOADS.fetch_add(1, Ordering::Relaxed);
        OpenUpload(())
    }
}

impl Drop for OpenUpload {
    fn drop(&mut self) {
        UPLOADS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Uploads open now: a process ending on its own would leave them on the store.
pub fn uploads_open() -> usize {
    UPLOADS.load(Ordering::Relaxed)
}
