//! A fixed set of aligned, pre-faulted buffers: the only memory the write path uses for data.
//!
//! Memory is `count × size` whatever the amount of data written; when every buffer is busy (being
//! generated or in flight to the sink) the producer waits, which is the pipeline's backpressure.
//! A [`Buffer`] goes back to its pool when dropped, wherever that happens — a completed write, an
//! aborted object, an error path — so buffers cannot leak. Alignment comes from the sink's declared
//! capabilities (O_DIRECT needs the device's), never less than a page.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex};

const PAGE: usize = 4096;

/// The pool. Cloning shares it.
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<Inner>,
}

struct Inner {
    /// Indices of free buffers.
    free: Mutex<Vec<usize>>,
    returned: Condvar,
    slots: Vec<NonNull<u8>>,
    layout: Layout,
}

// SAFETY: the raw pointers are owned allocations handed out to at most one `Buffer` at a time
// (guarded by the free list); the pool itself only allocates and frees them.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        for p in &self.slots {
            // SAFETY: every slot was allocated with `self.layout` in `BufferPool::new` and no `Buffer`
            // outlives `Inner` (each holds an `Arc<Inner>`).
            unsafe { alloc::dealloc(p.as_ptr(), self.layout) };
        }
    }
}

/// One buffer, exclusively borrowed from its pool until dropped.
pub struct Buffer {
    index: usize,
    ptr: NonNull<u8>,
    pool: Arc<Inner>,
}

// SAFETY: a `Buffer` is the unique owner of its slot while it exists.
unsafe impl Send for Buffer {}

impl Buffer {
    /// The whole buffer.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the slot is `layout.size()` initialised bytes (pre-faulted with zeros) owned by us.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.pool.layout.size()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.pool.layout.size()) }
    }

    pub fn capacity(&self) -> usize {
        self.pool.layout.size()
    }

    /// Index within the pool (io_uring's registered-buffer index).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether this buffer was lent by `pool`.
    pub fn belongs_to(&self, pool: &BufferPool) -> bool {
        Arc::ptr_eq(&self.pool, &pool.inner)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
        free.push(self.index);
        drop(free);
        self.pool.returned.notify_one();
    }
}

/// Why a pool could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("buffer size {size} is not a positive multiple of the alignment {align}")]
    BadSize { size: usize, align: usize },
    #[error("cannot allocate {count} buffers of {size} bytes")]
    OutOfMemory { count: usize, size: usize },
}

impl BufferPool {
    /// `count` buffers of `size` bytes aligned to `align` (rounded up to a page), each written once so
    /// its pages are resident before the first timed write.
    pub fn new(count: usize, size: usize, align: usize) -> Result<BufferPool, PoolError> {
        let align = align.max(PAGE).next_power_of_two();
        if size == 0 || !size.is_multiple_of(align) {
            return Err(PoolError::BadSize { size, align });
        }
        let layout = Layout::from_size_align(size, align).map_err(|_| PoolError::BadSize { size, align })?;
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            // SAFETY: layout has non-zero size.
            let p = unsafe { alloc::alloc(layout) };
            let Some(p) = NonNull::new(p) else {
                for q in slots {
                    // SAFETY: allocated above with the same layout.
                    unsafe { alloc::dealloc(NonNull::as_ptr(q), layout) };
                }
                return Err(PoolError::OutOfMemory { count, size });
            };
            // SAFETY: p points to `size` writable bytes. Zeroing initialises them; since the compiler may
            // turn alloc + zeroing into calloc (which leaves fresh pages untouched), a volatile store per
            // page then faults every page in for real.
            unsafe {
                std::ptr::write_bytes(p.as_ptr(), 0, size);
                for off in (0..size).step_by(PAGE) {
                    std::ptr::write_volatile(p.as_ptr().add(off), 0);
                }
            }
            slots.push(p);
        }
        let free = (0..slots.len()).rev().collect();
        Ok(BufferPool { inner: Arc::new(Inner { free: Mutex::new(free), returned: Condvar::new(), slots, layout }) })
    }

    /// A free buffer, if any.
    pub fn try_take(&self) -> Option<Buffer> {
        let index = self.inner.free.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        Some(self.buffer(index))
    }

    /// A free buffer, waiting for one to come back if necessary.
    pub fn take(&self) -> Buffer {
        let mut free = self.inner.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(index) = free.pop() {
                drop(free);
                return self.buffer(index);
            }
            free = self.inner.returned.wait(free).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn buffer(&self, index: usize) -> Buffer {
        Buffer { index, ptr: self.inner.slots[index], pool: self.inner.clone() }
    }

    /// Buffers currently in the pool (not lent out).
    pub fn available(&self) -> usize {
        self.inner.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn count(&self) -> usize {
        self.inner.slots.len()
    }

    pub fn buffer_size(&self) -> usize {
        self.inner.layout.size()
    }

    pub fn alignment(&self) -> usize {
        self.inner.layout.align()
    }

    /// Total bytes held by the pool.
    pub fn bytes(&self) -> u64 {
        (self.count() * self.buffer_size()) as u64
    }

    /// (address, length) of every buffer, by index, for registration with io_uring.
    pub fn regions(&self) -> Vec<(*mut u8, usize)> {
        self.inner.slots.iter().map(|p| (p.as_ptr(), self.buffer_size())).collect()
    }
}

/// Physical memory of this machine, bytes (0 if unknown).
pub fn machine_memory() -> u64 {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages > 0 && page > 0 {
        pages as u64 * page as u64
    } else {
        0
    }
}

/// Whether a pool of `buffers` × `size` fits this machine: at most three quarters of its memory,
/// so a pool too large is refused before it is allocated, not when the kernel runs out of pages.
pub fn pool_fits(buffers: u64, size: u64) -> Result<(), String> {
    let total = buffers.saturating_mul(size);
    let ram = machine_memory();
    if ram > 0 && total > ram / 4 * 3 {
        return Err(format!(
            "a pool of {buffers} × {} = {} is more than three quarters of this machine's {} of memory",
            crate::size::format_size(size),
            crate::size::format_size(total),
            crate::size::format_size(ram)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_come_back() {
        let pool = BufferPool::new(4, 1 << 16, 1 << 14).unwrap();
        assert_eq!(pool.alignment(), 1 << 14);
        let a = pool.take();
        let b = pool.try_take().unwrap();
        assert_eq!(a.as_slice().as_ptr() as usize % (1 << 14), 0);
        assert_eq!(b.capacity(), 1 << 16);
        assert_ne!(a.index(), b.index());
        assert_eq!(pool.available(), 2);
        drop(a);
        let t = std::thread::spawn(move || drop(b));
        t.join().unwrap();
        assert_eq!(pool.available(), 4);
    }

    #[test]
    fn take_waits_for_a_return() {
        let pool = BufferPool::new(1, 4096, 1).unwrap();
        let held = pool.take();
        assert!(pool.try_take().is_none());
        let p2 = pool.clone();
        let waiter = std::thread::spawn(move || p2.take().index());
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(held);
        assert_eq!(waiter.join().unwrap(), 0);
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(BufferPool::new(1, 0, 4096).is_err());
        assert!(BufferPool::new(1, 5000, 4096).is_err());
    }

    #[test]
    fn pool_outlives_handle_while_buffers_are_out() {
        let pool = BufferPool::new(2, 4096, 4096).unwrap();
        let mut b = pool.take();
        drop(pool);
        b.as_mut_slice()[4095] = 7;
        assert_eq!(b.as_slice()[4095], 7);
    }
}
