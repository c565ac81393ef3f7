//! The write engines a file sink carries its writes with: a pool of `pwrite` threads (queue depth =
//! threads, one synchronous write each) or one io_uring ring (see `uring`).

use super::job::Job;
use super::uring::Ring;
use crossbeam_channel::Sender;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;

pub(super) enum Engine {
    Pwrite { tx: Option<Sender<Job>>, workers: Vec<JoinHandle<()>> },
    Uring(Ring),
}

impl Engine {
    pub(super) fn submit(&self, job: Job) {
        match self {
            Engine::Pwrite { tx: Some(tx), .. } => {
                if let Err(e) = tx.send(job) {
                    e.into_inner().fail(io::Error::other("pwrite workers have stopped"));
                }
            }
            Engine::Pwrite { tx: None, .. } => job.fail(io::Error::other("pwrite workers have stopped")),
            Engine::Uring(ring) => ring.submit(job),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Engine::Pwrite { tx, workers } = self {
            tx.take();
            for w in workers.drain(..) {
                let _ = w.join();
            }
        }
    }
}

/// `flags`: the `RWF_*` flags of every write (0: a plain `pwrite`).
pub(super) fn pwrite_worker(rx: crossbeam_channel::Receiver<Job>, flags: i32) {
    for job in rx.iter() {
        let mut done = 0;
        let result = loop {
            if done == job.len {
                break Ok(());
            }
            match pwrite_flags(&job.file, &job.buf.as_slice()[done..job.len], job.offset + done as u64, flags) {
                Ok(0) => break Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0 bytes")),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => job.succeed(),
            Err(e) => job.fail(e),
        }
    }
}

/// One `pwritev2` of `buf` at `offset` with `flags` (a plain `pwrite` when they are 0).
pub(super) fn pwrite_flags(file: &File, buf: &[u8], offset: u64, flags: i32) -> io::Result<usize> {
    if flags == 0 {
        return nix::sys::uio::pwrite(file, buf, offset as i64).map_err(io::Error::from);
    }
    let iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: one iovec over a live slice, which the kernel only reads.
    let n = unsafe { libc::pwritev2(file.as_raw_fd(), &iov, 1, offset as i64, flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
