//! Request bodies made of pool buffers, lent to the HTTP client without a copy.

use crate::pool::Buffer;
use bytes::Bytes;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The body of one request: a part's pool buffers, in order, lent to the HTTP client. Cloning is
/// cheap (the SDK keeps a clone to retry); the buffers go back to the pool when the last clone drops.
#[derive(Clone, Default)]
pub struct Body {
    pub(super) chunks: Vec<Bytes>,
    pub(super) len: u64,
}

impl Body {
    pub fn new(chunks: Vec<Bytes>) -> Body {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Body { chunks, len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The single buffer of a one-buffer body.
    pub fn single(&self) -> Option<Bytes> {
        match self.chunks.len() {
            0 => Some(Bytes::new()),
            1 => Some(self.chunks[0].clone()),
            _ => None,
        }
    }

    /// As an `http-body` 1.x body that yields the buffers one frame each.
    pub fn into_http_body(self) -> ChunksBody {
        ChunksBody { chunks: self.chunks.into(), left: self.len }
    }

    pub fn crc32c(&self) -> u32 {
        self.digest(crc_fast::CrcAlgorithm::Crc32Iscsi) as u32
    }

    /// Azure Storage's CRC64 — the same function as CRC-64/NVME (reflected polynomial
    /// 0x9A6C9329AC4BC9B5, all-ones start and final xor).
    pub fn crc64(&self) -> u64 {
        self.digest(crc_fast::CrcAlgorithm::Crc64Nvme)
    }

    pub(super) fn digest(&self, algorithm: crc_fast::CrcAlgorithm) -> u64 {
        let mut d = crc_fast::Digest::new(algorithm);
        for c in &self.chunks {
            d.update(c);
        }
        d.finalize()
    }

    /// The buffers, in order.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }
}

/// See [`Body::into_http_body`].
pub struct ChunksBody {
    pub(super) chunks: std::collections::VecDeque<Bytes>,
    pub(super) left: u64,
}

impl http_body::Body for ChunksBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| {
            self.left -= c.len() as u64;
            Ok(http_body::Frame::data(c))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// A pool buffer's first `len` bytes, as the owner of a `Bytes`.
pub(super) struct Lent {
    pub(super) buf: Buffer,
    pub(super) len: usize,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf.as_slice()[..self.len]
    }
}
