//! The pread/pwrite driver, for kernels without io_uring (or `engine = "psync"`): one thread per
//! operation in flight, each blocking on its own, as fio's `psync` engine with `numjobs`.

use super::spec::OpKind;
use super::worker::{Next, Worker};
use crate::pool::Buffer;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Runs `w` to its end, one operation at a time, from `buf`.
pub(super) fn run(w: &mut Worker, files: &[std::sync::Arc<File>], mut buf: Buffer, think: Duration) {
    loop {
        let now = Instant::now();
        let slice = buf.as_mut_slice();
        let op = match w.next(now, slice) {
            Next::Done => break,
            Next::Wait(t) => {
                std::thread::sleep(t.saturating_duration_since(now).min(Duration::from_millis(20)));
                continue;
            }
            Next::Op(op) => op,
        };
        if let Err(e) = w.before_submit() {
            w.fail(e);
            w.complete(op, Err(std::io::Error::other("the journal could not be written")), Instant::now());
            break;
        }
        let (i, at) = w.place(op.offset);
        let file = &files[i];
        let len = op.len as usize;
        let result = match op.kind {
            OpKind::Read => file.read_exact_at(&mut slice[..len], at).map(|_| len),
            OpKind::Write => file.write_all_at(&slice[..len], at).map(|_| len),
            OpKind::Fsync => super::sync(file).map(|_| 0),
            OpKind::Trim => punch(file, at, op.len).map(|_| len),
        };
        w.complete(op, result, Instant::now());
        if !think.is_zero() {
            std::thread::sleep(think);
        }
    }
}

fn punch(file: &File, at: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor; fallocate only reads its arguments.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            at as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
