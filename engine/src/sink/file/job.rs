//! A write on its way to a file, as both engines (pwrite threads and the io_uring ring) carry it:
//! the file, the buffer, and the completion to call once the buffer is back in its pool.

use crate::error::Error;
use crate::pool::Buffer;
use crate::sink::Done;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A write on its way to a file: what the engines (pwrite threads, io_uring) carry.
pub(crate) struct Job {
    pub(crate) file: Arc<File>,
    /// Final path, for error messages.
    pub(crate) path: Arc<PathBuf>,
    pub(crate) offset: u64,
    pub(crate) len: usize,
    pub(crate) buf: Buffer,
    pub(crate) done: Done,
}

impl Job {
    pub(crate) fn succeed(self) {
        drop(self.buf);
        (self.done)(Ok(()));
    }

    pub(crate) fn fail(self, e: io::Error) {
        let path = self.path.to_path_buf();
        drop(self.buf);
        (self.done)(Err(Error::io(path, e)));
    }
}
