//! A streaming view of one stream, for consumers that pull bytes (`io::copy`, a socket, a compressor).
//! Small reads are served from an internal buffer filled in whole pieces; large reads are filled in place.

use super::Generator;
use std::io;

/// Internal buffer size: large enough that refills are rare, small enough to stay in cache.
const BUF: usize = 1 << 20;

/// Reads bytes `[0, len)` of one stream; identical to [`Generator::fill`] for any read sizes.
pub struct StreamReader {
    gen: Generator,
    stream: u64,
    pos: u64,
    len: u64,
    buf: Vec<u8>,
    buf_start: u64,
    buf_len: usize,
}

impl StreamReader {
    pub(super) fn new(gen: Generator, stream: u64, len: u64) -> Self {
        StreamReader { gen, stream, pos: 0, len, buf: Vec::new(), buf_start: 0, buf_len: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.len - self.pos
    }
}

impl io::Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let want = (out.len() as u64).min(self.remaining()) as usize;
        if want == 0 {
            return Ok(0);
        }
        if want >= BUF {
            self.gen.fill_par(self.stream, self.pos, &mut out[..want]);
            self.pos += want as u64;
            return Ok(want);
        }
        let in_buf = self.pos >= self.buf_start && self.pos < self.buf_start + self.buf_len as u64;
        if !in_buf {
            if self.buf.is_empty() {
                self.buf = vec![0u8; BUF];
            }
            self.buf_start = self.pos;
            self.buf_len = (BUF as u64).min(self.remaining()) as usize;
            self.gen.fill_par(self.stream, self.pos, &mut self.buf[..self.buf_len]);
        }
        let at = (self.pos - self.buf_start) as usize;
        let n = want.min(self.buf_len - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}
