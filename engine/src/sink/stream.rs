//! An `io::Write` onto one object: bytes are gathered into pool buffers and written at increasing
//! offsets, several writes in flight. For producers that emit a byte stream of unknown length —
//! `gen --output-compress`, whose compressor decides the sizes.

use super::{ObjectWriter, WriteReq};
use crate::error::{Error, Result};
use crate::pool::{Buffer, BufferPool};
use crossbeam_channel::{Receiver, Sender};
use std::io;

pub struct ObjectStream<'s> {
    writer: Option<Box<dyn ObjectWriter + 's>>,
    pool: BufferPool,
    current: Option<(Buffer, usize)>,
    offset: u64,
    in_flight: usize,
    tx: Sender<Result<()>>,
    rx: Receiver<Result<()>>,
    failed: Option<Error>,
    /// Writes issued so far.
    pub ops: u64,
}

impl<'s> ObjectStream<'s> {
    pub fn new(writer: Box<dyn ObjectWriter + 's>, pool: BufferPool) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        ObjectStream {
            writer: Some(writer),
            pool,
            current: None,
            offset: 0,
            in_flight: 0,
            tx,
            rx,
            failed: None,
            ops: 0,
        }
    }

    fn reap(&mut self, block: bool) {
        loop {
            let r = if block && self.in_flight > 0 { self.rx.recv().ok() } else { self.rx.try_recv().ok() };
            let Some(r) = r else { return };
            self.in_flight -= 1;
            if let Err(e) = r {
                self.failed.get_or_insert(e);
            }
            if block {
                return;
            }
        }
    }

    fn submit_current(&mut self) {
        let Some((buf, len)) = self.current.take() else {
            return;
        };
        if len == 0 {
            return;
        }
        let tx = self.tx.clone();
        let done = Box::new(move |r: Result<()>| {
            let _ = tx.send(r);
        });
        self.in_flight += 1;
        self.ops += 1;
        let offset = self.offset;
        self.offset += len as u64;
        self.writer.as_mut().expect("stream is open").submit(WriteReq { offset, len, buf, done });
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some(e) => Err(io::Error::other(e.to_string())),
            None => Ok(()),
        }
    }

    /// Flushes, waits for every write and finishes the object; returns its size.
    pub fn finish(mut self) -> Result<u64> {
        self.submit_current();
        while self.in_flight > 0 {
            self.reap(true);
        }
        if let Some(e) = self.failed.take() {
            if let Some(w) = self.writer.take() {
                w.abort();
            }
            return Err(e);
        }
        let size = self.offset;
        self.writer.take().expect("stream is open").finish(size)?;
        Ok(size)
    }
}

impl io::Write for ObjectStream<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.reap(false);
        self.check()?;
        if self.current.is_none() {
            let buf = loop {
                if let Some(b) = self.pool.try_take() {
                    break b;
                }
                self.reap(true);
                self.check()?;
            };
            self.current = Some((buf, 0));
        }
        let (buf, len) = self.current.as_mut().expect("a current buffer");
        let n = data.len().min(buf.capacity() - *len);
        buf.as_mut_slice()[*len..*len + n].copy_from_slice(&data[..n]);
        *len += n;
        if *len == buf.capacity() {
            self.submit_current();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectStream<'_> {
    fn drop(&mut self) {
        // Not finished: wait for writes in flight (they hold our buffers), then abort.
        self.current.take();
        while self.in_flight > 0 {
            self.reap(true);
        }
        if let Some(w) = self.writer.take() {
            w.abort();
        }
    }
}
