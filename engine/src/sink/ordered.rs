//! A sink of one byte stream: the object's writes go, in offset order, into an `io::Write` (stdout, a
//! pipe, a zstd encoder in front of a file). The executor completes chunks in any order; this writer
//! holds the early ones until the gap before them is filled. It writes on the executor's own thread,
//! while the generator threads fill the next chunks: generation and writing overlap.
//!
//! Holding chunks cannot deadlock: the executor hands out offsets in order, so the chunk the stream
//! waits for is always being generated, never waiting for a buffer.

use super::{Capabilities, Done, ObjectReader, ObjectWriter, Sink, WriteReq};
use crate::error::{Error, Result};
use crate::pool::Buffer;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Mutex;

/// Where the stream ends: something to write to, and what to do once everything is written (a
/// compressor writes its last frame; a plain writer flushes).
pub trait StreamOut: Write + Send {
    fn close(self: Box<Self>) -> io::Result<()>;
}

/// A plain writer as the end of a stream: closing flushes it.
pub struct Plain<W>(pub W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> StreamOut for Plain<W> {
    fn close(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}

/// A sink whose one object is the stream; `label` names it in messages (`stdout`, a path).
pub struct OrderedSink<'a> {
    label: String,
    out: Mutex<Option<Box<dyn StreamOut + 'a>>>,
}

impl<'a> OrderedSink<'a> {
    pub fn new(label: impl Into<String>, out: Box<dyn StreamOut + 'a>) -> OrderedSink<'a> {
        OrderedSink { label: label.into(), out: Mutex::new(Some(out)) }
    }
}

impl Sink for OrderedSink<'_> {
    fn capabilities(&self) -> Capabilities {
        Capabilities::unconstrained("stream")
    }

    fn describe(&self) -> String {
        self.label.clone()
    }

    fn create(
        &self,
        _name: &str,
        _size: Option<u64>,
        _identity: &crate::object::identity::Identity,
    ) -> Result<Box<dyn ObjectWriter + '_>> {
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(out) = out else {
            return Err(Error::sink(&self.label, "a stream holds one object"));
        };
        Ok(Box::new(OrderedWriter {
            out: Some(out),
            next: 0,
            early: BTreeMap::new(),
            failed: None,
            label: &self.label,
        }))
    }

    fn open(&self, _name: &str) -> Result<Box<dyn ObjectReader>> {
        Err(Error::sink(&self.label, "a stream cannot be read back"))
    }
}

struct OrderedWriter<'a> {
    out: Option<Box<dyn StreamOut + 'a>>,
    /// The offset the stream has reached.
    next: u64,
    /// Chunks that arrived before the gap in front of them was filled.
    early: BTreeMap<u64, (usize, Buffer, Done)>,
    /// The first write error: every later write fails with it.
    failed: Option<Error>,
    label: &'a str,
}

impl ObjectWriter for OrderedWriter<'_> {
    fn submit(&mut self, req: WriteReq) {
        self.early.insert(req.offset, (req.len, req.buf, req.done));
        while let Some((len, buf, done)) = self.early.remove(&self.next) {
            self.next += len as u64;
            let r = match (&self.failed, self.out.as_mut()) {
                (Some(e), _) => Err(e.clone()),
                (None, Some(out)) => out.write_all(&buf.as_slice()[..len]).map_err(|e| Error::io(self.label, e)),
                (None, None) => Err(Error::sink(self.label, "the stream is closed")),
            };
            drop(buf);
            if let Err(e) = &r {
                self.failed.get_or_insert(e.clone());
            }
            done(r);
        }
    }

    fn finish(mut self: Box<Self>, _size: u64) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let out = self.out.take().ok_or_else(|| Error::sink(self.label, "the stream is closed"))?;
        out.close().map_err(|e| Error::io(self.label, e))
    }

    fn abort(self: Box<Self>) {
        // What reached the stream stays there (a pipe cannot take bytes back): the reader sees a short
        // stream, and the run fails. Chunks still held give their buffers back as the writer drops.
    }
}

impl Drop for OrderedWriter<'_> {
    fn drop(&mut self) {
        for (_, (_, buf, done)) in std::mem::take(&mut self.early) {
            drop(buf);
            done(Err(Error::Cancelled));
        }
    }
}
