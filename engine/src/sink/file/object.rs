//! An object being written to a file: its temporary, its writes through the sink's engine, its
//! completion (fsync, rename, directory fsync) or its abort.

use super::beneath::{self, Kind};
use super::job::Job;
use super::*;
use crate::error::{Error, Failure, Result};
use crate::sink::{ObjectWriter, WriteReq};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

/// An open object; it borrows its sink, whose engine carries its writes.
pub(super) struct FileObject<'a> {
    /// Its entry in the temporaries an interrupt removes.
    pub(super) registered: Option<u64>,
    pub(super) file: Arc<File>,
    /// Its temporary name and final name, in `dir`.
    pub(super) tmp: String,
    pub(super) name: String,
    /// The final path, for messages.
    pub(super) path: Arc<PathBuf>,
    pub(super) dir: OwnedFd,
    pub(super) align: usize,
    pub(super) engine: &'a FileSink,
    pub(super) open: bool,
}

impl FileObject<'_> {
    pub(super) fn remove_tmp(&mut self) {
        if self.open {
            self.open = false;
            if beneath::unlink_in(&self.dir, &self.tmp).is_ok() {
                // Its last close frees what it holds: not on the way out (see `release`).
                release::defer(&self.file);
            }
        }
    }

    /// Whether the final name may be taken: nothing is there, or an object this engine wrote (it
    /// carries an identity). A file of anyone else's, a directory, a symlink or a FIFO is left alone.
    fn may_replace(&self) -> io::Result<()> {
        let refuse = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{what} is already there, which dgen-engine did not write: it is not replaced (it carries no \
                     identity: another program made it, or a dgen-engine older than this one; remove it or \
                     choose another target root)"
                ),
            ))
        };
        match beneath::kind_at(&self.dir, &self.name)? {
            Kind::Missing => Ok(()),
            // The user named this output: what was there goes, as with `cp` (a directory stays).
            Kind::File | Kind::Other if self.engine.replace_any => Ok(()),
            Kind::File => match beneath::object_at(&self.dir, &self.name) {
                Ok(o) if self.engine.identity && o.identity.is_some() => Ok(()),
                Ok(_) => refuse("a file"),
                // Gone meanwhile (or turned into something that is not a file).
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            },
            Kind::Dir => refuse("a directory"),
            Kind::Other => refuse("a symlink, FIFO, device or socket"),
        }
    }
}

impl ObjectWriter for FileObject<'_> {
    fn submit(&mut self, req: WriteReq) {
        // O_DIRECT: pad a short tail up to the alignment; `finish` truncates it away.
        let len = if self.align > 1 { req.len.div_ceil(self.align) * self.align } else { req.len };
        debug_assert!(len <= req.buf.capacity());
        self.engine.engine.submit(Job {
            file: self.file.clone(),
            path: self.path.clone(),
            offset: req.offset,
            len,
            buf: req.buf,
            done: req.done,
        });
    }

    fn finish(mut self: Box<Self>, size: u64) -> Result<()> {
        let path = self.path.to_path_buf();
        let result = (|| {
            if self.align > 1 && !size.is_multiple_of(self.align as u64) {
                self.file.set_len(size)?;
            }
            self.file.sync_all()?;
            self.may_replace()?;
            beneath::rename_in(&self.dir, &self.tmp, &self.name)?;
            self.open = false;
            nix::unistd::fsync(&self.dir).map_err(io::Error::from)
        })();
        result.map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                Error::storage(Failure::Denied, path.display().to_string(), e.to_string(), None)
            }
            _ => Error::io(path, e),
        })
    }

    fn abort(mut self: Box<Self>) {
        self.remove_tmp();
    }
}

impl Drop for FileObject<'_> {
    fn drop(&mut self) {
        self.remove_tmp();
        if let Some(id) = self.registered {
            crate::sink::interrupt::temp_closed(id);
        }
    }
}
