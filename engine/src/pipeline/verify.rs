//! Reading an object back and comparing it with what was meant to be written — no stored copy needed,
//! since the expected bytes are regenerated from the seed. Reading and regenerating overlap.

use crate::error::{Error, Result};
use crate::generator::Generator;
use crate::object::Content;
use crate::pool::BufferPool;
use crate::sink::ObjectReader;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

/// The outcome of a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every byte matches.
    Identical { bytes: u64, crc32c: u32 },
    /// The first byte that differs.
    Differs { offset: u64, expected: u8, found: u8 },
    /// The common prefix matches but the lengths differ.
    SizeMismatch { expected: u64, found: u64 },
    /// The CRC32C of what was read is not that of what was written (a `crc` read).
    CrcMismatch { expected: u32, found: u32 },
    /// The object could not be read back at all (missing, no permission…).
    Unreadable { reason: String },
}

impl Verdict {
    pub fn is_identical(&self) -> bool {
        matches!(self, Verdict::Identical { .. })
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Identical { bytes, .. } => write!(f, "identical ({bytes} bytes)"),
            Verdict::Unreadable { reason } => write!(f, "cannot be read back: {reason}"),
            Verdict::Differs { offset, expected, found } => {
                write!(f, "differs at byte offset {offset}: expected 0x{expected:02x}, found 0x{found:02x}")
            }
            Verdict::SizeMismatch { expected, found } => {
                write!(f, "size mismatch: expected {expected} bytes, found {found}")
            }
            Verdict::CrcMismatch { expected, found } => {
                write!(f, "CRC32C mismatch: expected 0x{expected:08x}, read 0x{found:08x}")
            }
        }
    }
}

/// Compares bytes pulled from a source with `content` of `size` bytes. `read(offset, buf)` fills as
/// much of `buf` as it can and returns the count, 0 at the end; `source_size` is the source's length
/// when known (files), else the source is read to its end to tell. Two `pool` buffers are used.
/// Ctrl-C (`cancel`) stops it between chunks with [`Error::Cancelled`].
pub fn compare(
    mut read: impl FnMut(u64, &mut [u8]) -> Result<usize> + Send,
    source_size: Option<u64>,
    gen: &Generator,
    content: &Content,
    size: u64,
    pool: &BufferPool,
    cancel: &AtomicBool,
) -> Result<Verdict> {
    let mut got = pool.take();
    let mut want = pool.take();
    let chunk = got.capacity();
    let mut pos = 0u64;
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        // Fill `got` completely unless the source ends.
        let (filled, expected_len) = {
            let expected_len = (chunk as u64).min(size.saturating_sub(pos)) as usize;
            let want_buf = &mut want.as_mut_slice()[..expected_len];
            let got_buf = got.as_mut_slice();
            let (read_result, ()) = rayon::join(
                || -> Result<usize> {
                    let mut filled = 0;
                    while filled < chunk {
                        let n = read(pos + filled as u64, &mut got_buf[filled..])?;
                        if n == 0 {
                            break;
                        }
                        filled += n;
                    }
                    Ok(filled)
                },
                || match content {
                    Content::Stream { stream, offset } => gen.fill_par(*stream, offset + pos, want_buf),
                    Content::Recipe(r) => {
                        use rayon::prelude::*;
                        const PIECE: usize = 1 << 20;
                        want_buf
                            .par_chunks_mut(PIECE)
                            .enumerate()
                            .for_each(|(i, c)| r.fill(pos + (i * PIECE) as u64, c));
                    }
                },
            );
            (read_result?, expected_len)
        };
        let common = filled.min(expected_len);
        let a = &got.as_slice()[..common];
        let b = &want.as_slice()[..common];
        if a != b {
            let i = a.iter().zip(b).position(|(x, y)| x != y).expect("slices differ");
            return Ok(Verdict::Differs { offset: pos + i as u64, expected: b[i], found: a[i] });
        }
        digest.update(a);
        pos += common as u64;
        if filled != expected_len {
            // One side ended early: tell how long the source really is.
            let found = match source_size {
                Some(n) => n,
                None => {
                    let mut found = pos + (filled - common) as u64;
                    loop {
                        if cancel.load(Ordering::Relaxed) {
                            return Err(Error::Cancelled);
                        }
                        let n = read(found, got.as_mut_slice())?;
                        if n == 0 {
                            break found;
                        }
                        found += n as u64;
                    }
                }
            };
            return Ok(Verdict::SizeMismatch { expected: size, found });
        }
        if filled < chunk {
            return Ok(Verdict::Identical { bytes: pos, crc32c: digest.finalize() as u32 });
        }
    }
}

/// The two buffers a comparison uses: of the write size `buffer_size` rounds to for this sink (as the
/// executor rounds it), aligned as the sink needs.
pub fn comparison_pool(caps: &crate::sink::Capabilities, buffer_size: usize) -> Result<BufferPool> {
    let size = crate::pipeline::executor::buffer_size_for(caps, buffer_size);
    BufferPool::new(2, size, caps.alignment).map_err(Error::pool)
}

/// Compares a finished object, read back through its sink, with `content` of `size` bytes.
pub fn compare_object(
    reader: Box<dyn ObjectReader + '_>,
    gen: &Generator,
    content: &Content,
    size: u64,
    pool: &BufferPool,
    cancel: &AtomicBool,
) -> Result<Verdict> {
    let found = reader.size();
    compare(|off, buf| reader.read_at(off, buf), Some(found), gen, content, size, pool, cancel)
}

/// An object read back front to back, as an `io::Read` (for a decompressor).
pub struct ObjectRead<'a> {
    reader: Box<dyn ObjectReader + 'a>,
    pos: u64,
}

impl<'a> ObjectRead<'a> {
    pub fn new(reader: Box<dyn ObjectReader + 'a>) -> Self {
        ObjectRead { reader, pos: 0 }
    }
}

impl Read for ObjectRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read_at(self.pos, buf).map_err(std::io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Adapts a sequential reader (a decompressor over object `path`) to `compare`'s positional `read`;
/// its errors (a read that failed, compressed data that does not decode) name the object.
pub fn sequential(
    path: impl Into<std::path::PathBuf>,
    mut r: impl Read + Send,
) -> impl FnMut(u64, &mut [u8]) -> Result<usize> + Send {
    let path = path.into();
    move |_, buf| r.read(buf).map_err(|e| Error::io(&path, e))
}
