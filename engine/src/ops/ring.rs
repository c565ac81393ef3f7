//! The io_uring driver: one ring per worker, on its own thread, with its buffers and the region's
//! file registered (no page pinning or file lookup per operation), as many operations in flight as
//! the job's depth, and one `io_uring_enter` per batch — it submits what it has prepared and reaps
//! what has completed in the same call, as fio's io_uring engine does.

use super::spec::OpKind;
use super::worker::{Next, Op, Worker};
use crate::pool::BufferPool;
use io_uring::{opcode, types, IoUring};
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Longest sleep in the ring: how soon Ctrl-C and the end time are seen with nothing completing.
const TICK: Duration = Duration::from_millis(20);

/// Whether this kernel gives us rings (and `IORING_FEAT_EXT_ARG`, for waits with a timeout).
pub fn available() -> bool {
    IoUring::new(2).is_ok_and(|r| r.params().is_feature_ext_arg())
}

/// Runs `w` to its end through a ring of `depth`, `buffers` holding one buffer per slot.
/// `batch`: submit what is ready in one call with the wait, else each operation as it is ready.
pub(super) fn run(
    w: &mut Worker,
    fds: &[RawFd],
    depth: usize,
    buffers: &BufferPool,
    think: Duration,
    batch: bool,
) -> io::Result<()> {
    let one_by_one = !batch;
    let mut ring = new_ring((depth as u32).next_power_of_two().max(4))?;
    let mut bufs: Vec<_> = (0..depth).map(|_| buffers.take()).collect();
    let iov: Vec<libc::iovec> = buffers
        .regions()
        .into_iter()
        .map(|(p, n)| libc::iovec { iov_base: p as *mut libc::c_void, iov_len: n })
        .collect();
    // Registered buffers and file save a page pinning and a file lookup per operation; where they
    // cannot be had (a memlock limit), plain reads and writes do the same work.
    // SAFETY: the buffers live in `buffers` (borrowed for this whole call) and the ring is dropped
    // at its end, before them.
    let fixed = unsafe { ring.submitter().register_buffers(&iov) }.is_ok();
    let registered = ring.submitter().register_files(fds).is_ok();
    let mut slots: Vec<Option<Op>> = vec![None; depth];
    let mut ready = vec![Instant::now(); depth];
    // Bytes done so far of each slot's operation (more than 0 only after a short transfer).
    let mut done_bytes = vec![0u64; depth];
    let mut free: Vec<usize> = (0..depth).rev().collect();
    let mut inflight = 0usize;
    let mut stopping = false;
    loop {
        let now = Instant::now();
        let mut wake = now + TICK;
        if !stopping {
            let mut i = free.len();
            while i > 0 {
                i -= 1;
                let s = free[i];
                if ready[s] > now {
                    wake = wake.min(ready[s]);
                    continue;
                }
                let buf = bufs[s].as_mut_slice();
                match w.next(now, buf) {
                    Next::Done => {
                        stopping = true;
                        break;
                    }
                    Next::Wait(t) => {
                        wake = wake.min(t);
                        break;
                    }
                    Next::Op(op) => {
                        let ptr = buf.as_mut_ptr();
                        let idx = bufs[s].index() as u16;
                        let sqe = sqe(&op, w.place(op.offset), ptr, idx, fixed, registered, fds);
                        // SAFETY: the buffer of slot `s` stays ours, untouched, until its completion.
                        if unsafe { ring.submission().push(&sqe.user_data(s as u64)) }.is_err() {
                            // Cannot happen (the ring has a slot per depth); stop cleanly if it does.
                            w.complete(op, Err(io::Error::other("io_uring submission queue full")), now);
                            stopping = true;
                            break;
                        }
                        slots[s] = Some(op);
                        free.swap_remove(i);
                        inflight += 1;
                        if one_by_one {
                            // Each operation goes out on its own, as fio's default
                            // iodepth_batch_submit = 1 does: a block device gets every request
                            // at once instead of a plugged batch it may refuse to take whole.
                            if let Err(e) = w.before_submit().and_then(|_| ring.submit().map(drop)) {
                                w.fail(e);
                                stopping = true;
                                break;
                            }
                        }
                    }
                }
            }
        }
        if stopping && inflight == 0 {
            break;
        }
        if let Err(e) = w.before_submit() {
            // The journal cannot be kept: nothing more is submitted.
            w.fail(e);
            stopping = true;
        }
        let wait = wake.saturating_duration_since(Instant::now());
        if inflight == 0 {
            // Nothing to reap: a rate cap or think time holds the next operation back.
            std::thread::sleep(wait);
            continue;
        }
        let ts = types::Timespec::new().sec(wait.as_secs()).nsec(wait.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        // A timed wait only when a rate cap or think time is due before the tick: a timer per wait
        // costs a device-bound ring a few per cent of its IOPS.
        let timed = wait < TICK;
        let waited = if timed { ring.submitter().submit_with_args(1, &args) } else { ring.submit_and_wait(1) };
        match waited {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        let done: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (tag, res) in done {
            let s = tag as usize;
            let Some(op) = slots[s].take() else { continue };
            // A short read or write (a special file taking a page at a time) goes on for the rest;
            // 0 bytes is the end of the file, which the completion reports as short.
            let moved = done_bytes[s] + res.max(0) as u64;
            if res > 0 && moved < op.len && matches!(op.kind, OpKind::Read | OpKind::Write) {
                done_bytes[s] = moved;
                // SAFETY: `moved < op.len ≤ the buffer's length`: within the slot's buffer.
                let ptr = unsafe { bufs[s].as_mut_slice().as_mut_ptr().add(moved as usize) };
                let rest = Op { offset: op.offset + moved, len: op.len - moved, ..op };
                let e = sqe(&rest, w.place(rest.offset), ptr, bufs[s].index() as u16, fixed, registered, fds);
                // SAFETY: the slot's buffer stays ours until the operation completes.
                if unsafe { ring.submission().push(&e.user_data(tag)) }.is_ok() {
                    slots[s] = Some(op);
                    continue;
                }
            }
            let result = if res < 0 { Err(io::Error::from_raw_os_error(-res)) } else { Ok(moved as usize) };
            done_bytes[s] = 0;
            w.complete(op, result, now);
            ready[s] = now + think;
            free.push(s);
            inflight -= 1;
        }
    }
    drop(ring);
    bufs.clear();
    Ok(())
}

/// A ring for one thread: completions run only when it asks for them (no interrupting IPIs, no
/// task work on other threads), as fio sets its rings up; older kernels get the plain ring.
fn new_ring(entries: u32) -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    b.setup_coop_taskrun().setup_single_issuer().setup_defer_taskrun();
    if let Ok(r) = b.build(entries) {
        return Ok(r);
    }
    let mut b = IoUring::builder();
    b.setup_coop_taskrun();
    b.build(entries).or_else(|_| IoUring::new(entries))
}

/// The submission of one operation.
fn sqe(
    op: &Op,
    (file, at): (usize, u64),
    ptr: *mut u8,
    idx: u16,
    fixed: bool,
    registered: bool,
    fds: &[RawFd],
) -> io_uring::squeue::Entry {
    let len = op.len as u32;
    macro_rules! on {
        ($f:expr) => {
            match op.kind {
                OpKind::Read if fixed => opcode::ReadFixed::new($f, ptr, len, idx).offset(at).build(),
                OpKind::Read => opcode::Read::new($f, ptr, len).offset(at).build(),
                OpKind::Write if fixed => opcode::WriteFixed::new($f, ptr, len, idx).offset(at).build(),
                OpKind::Write => opcode::Write::new($f, ptr, len).offset(at).build(),
                OpKind::Fsync => opcode::Fsync::new($f).build(),
                OpKind::Trim => opcode::Fallocate::new($f, op.len)
                    .offset(at)
                    .mode(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE)
                    .build(),
            }
        };
    }
    if registered {
        on!(types::Fixed(file as u32))
    } else {
        on!(types::Fd(fds[file]))
    }
}
