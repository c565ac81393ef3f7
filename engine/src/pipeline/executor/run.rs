//! One run of the executor: the coordinator's scheduling state (objects open, buffers in generation
//! and in flight, the CRC chains, objects on their way to `finish`) and its event loop, which every
//! worker and writer reports to through one channel.

use super::*;
use crate::error::{Error, Result};
use crate::pool::Buffer;
use crate::sink::{ObjectWriter, WriteReq};
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub(super) enum Event {
    Generated { obj: usize, offset: u64, len: usize, buf: Buffer, crc: Option<u32>, took: Duration },
    Written { obj: usize, len: usize, result: Result<()>, took: Duration },
    Finished { result: Result<ObjectResult> },
}

pub(super) struct Open<'s> {
    pub(super) id: usize,
    pub(super) job: ObjectJob,
    pub(super) writer: Option<Box<dyn ObjectWriter + 's>>,
    /// Bytes per part when the writer assembles several writes into one (0: every write stands alone).
    pub(super) part: u64,
    pub(super) next: u64,
    pub(super) in_flight: usize,
    pub(super) written: u64,
    pub(super) crc: CrcChain,
    pub(super) started: Instant,
}

/// An object's CRC32C, built from its chunks' CRCs as they arrive in any order: the CRC of the
/// contiguous prefix so far, plus the chunks that arrived ahead of it (at most the chunks in flight).
/// Memory stays the same whatever the object's size.
#[derive(Default)]
pub(super) struct CrcChain {
    pub(super) prefix: u32,
    pub(super) done: u64,
    pub(super) ahead: std::collections::BTreeMap<u64, (u32, u64)>,
}

impl CrcChain {
    pub(super) fn add(&mut self, offset: u64, crc: u32, len: u64) {
        self.ahead.insert(offset, (crc, len));
        while let Some((crc, len)) = self.ahead.remove(&self.done) {
            self.prefix = if self.done == 0 {
                crc
            } else {
                crc_fast::checksum_combine(crc_fast::CrcAlgorithm::Crc32Iscsi, self.prefix as u64, crc as u64, len)
                    as u32
            };
            self.done += len;
        }
    }
}

/// An object whose writes are done, on its way to `finish` (fsync, rename, commit) on the finisher.
pub(super) struct ToFinish<'s> {
    pub(super) writer: Box<dyn ObjectWriter + 's>,
    pub(super) result: ObjectResult,
    pub(super) started: Instant,
}

/// The coordinator's state during one run.
pub(super) struct Coordinator<'e, 's> {
    pub(super) exec: &'e Executor<'s>,
    pub(super) tx: Sender<Event>,
    /// Where finished (and cut) objects go when someone listens.
    pub(super) done: Option<Sender<ObjectResult>>,
    pub(super) open: Vec<Open<'s>>,
    pub(super) next_id: usize,
    pub(super) rr: usize,
    pub(super) in_gen: usize,
    pub(super) in_io: usize,
    pub(super) finishing: usize,
    pub(super) failure: Option<Error>,
    pub(super) stats: PipelineStats,
}

impl<'e, 's> Coordinator<'e, 's> {
    pub(super) fn stopping(&self, cancel: &AtomicBool) -> bool {
        self.failure.is_some() || cancel.load(Ordering::Relaxed)
    }

    pub(super) fn fail(&mut self, e: Error) {
        self.failure.get_or_insert(e);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn drive(
        &mut self,
        jobs: &Receiver<ObjectJob>,
        done: Option<&Sender<ObjectResult>>,
        rx: &Receiver<Event>,
        fin_tx: &Sender<ToFinish<'s>>,
        observer: &mut dyn Observer,
        cancel: &AtomicBool,
    ) {
        let mut jobs_left = true;
        let mut last_progress = Instant::now();
        loop {
            // Open objects up to the limit.
            while !self.stopping(cancel) && jobs_left && self.open.len() < self.exec.cfg.open_objects {
                match jobs.try_recv() {
                    Ok(job) => self.open_object(job, fin_tx),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => jobs_left = false,
                }
            }
            // Stopping: abort open objects now rather than after the drain — a writer holding the
            // first writes of a part that will never be completed gives them back when aborted.
            if self.stopping(cancel) {
                for o in &mut self.open {
                    if let Some(w) = o.writer.take() {
                        w.abort();
                    }
                }
            }
            let starved = if self.stopping(cancel) { false } else { self.schedule() };
            let idle = self.in_gen == 0 && self.in_io == 0 && self.finishing == 0;
            if idle && (self.stopping(cancel) || (self.open.is_empty() && !jobs_left)) {
                break;
            }
            // Wait for something to happen (an event, or a new job if there is room for one); the
            // timeout keeps Ctrl-C responsive.
            let waited = Instant::now();
            let want_jobs = jobs_left && !self.stopping(cancel) && self.open.len() < self.exec.cfg.open_objects;
            let event = if want_jobs {
                crossbeam_channel::select! {
                    recv(rx) -> e => e.ok(),
                    recv(jobs) -> j => {
                        match j {
                            Ok(job) => self.open_object(job, fin_tx),
                            Err(_) => jobs_left = false,
                        }
                        None
                    }
                    default(Duration::from_millis(100)) => None,
                }
            } else {
                rx.recv_timeout(Duration::from_millis(100)).ok()
            };
            // Out of buffers with some held by the sink: the storage is what we wait for. (With all of
            // them being generated, it is generation, which the generate time already shows.)
            if starved && self.in_io > 0 {
                self.exec.split.write_waited(waited.elapsed());
            }
            match event {
                Some(Event::Generated { obj, offset, len, buf, crc, took }) => {
                    self.generated(obj, offset, len, buf, crc, took, cancel)
                }
                Some(Event::Written { obj, len, result, took }) => self.written(obj, len, result, took, fin_tx),
                Some(Event::Finished { result }) => {
                    self.finishing -= 1;
                    match result {
                        // With a listener (a plugin's host), the listener keeps the record: one copy.
                        Ok(r) => match done {
                            Some(d) => {
                                let _ = d.send(r);
                            }
                            None => self.stats.objects.push(r),
                        },
                        Err(e) => self.fail(e),
                    }
                }
                None => {}
            }
            if last_progress.elapsed() >= Duration::from_millis(100) {
                observer.progress(self.stats.bytes);
                last_progress = Instant::now();
            }
        }
        self.exec.split.writes_idle();
        for mut o in self.open.drain(..) {
            if let Some(w) = o.writer.take() {
                w.abort();
            }
        }
    }

    pub(super) fn open_object(&mut self, job: ObjectJob, fin_tx: &Sender<ToFinish<'s>>) {
        let exec = self.exec;
        if exec.walled() {
            let at = Instant::now();
            let cut = ObjectResult { name: job.name, size: 0, crc32c: None, latency: Duration::ZERO, at, cut: true };
            return self.cut(cut);
        }
        let max = exec.sink.capabilities().max_object;
        if job.size > max {
            return self.fail(Error::sink(
                exec.sink.describe(),
                format!(
                    "{}: {} is more than the {} this target takes for one object",
                    crate::untrusted::sanitize(&job.name, 200),
                    crate::size::format_size(job.size),
                    crate::size::format_size(max)
                ),
            ));
        }
        let identity = crate::object::identity::Identity::of(&job.content, &exec.gen, job.size);
        match exec.sink.create(&job.name, Some(job.size), &identity) {
            Ok(writer) => {
                // A part the pool cannot hold whole could never be completed: say so instead of hanging.
                let part = writer.part_size().filter(|&p| p > exec.write_size as u64).unwrap_or(0);
                let needed = part.div_ceil(exec.write_size as u64);
                if needed > exec.pool.count() as u64 {
                    writer.abort();
                    return self.fail(Error::resource(format!(
                        "{}: {} needs parts of {} but the buffer pool holds only {} ({} × {}): raise \
                         pipeline.buffers or pipeline.buffer_size",
                        exec.sink.describe(),
                        job.name,
                        crate::size::format_size(part),
                        crate::size::format_size(exec.pool.bytes()),
                        exec.pool.count(),
                        crate::size::format_size(exec.write_size as u64),
                    )));
                }
                let o = Open {
                    part,
                    id: self.next_id,
                    crc: CrcChain::default(),
                    job,
                    writer: Some(writer),
                    next: 0,
                    in_flight: 0,
                    written: 0,
                    started: Instant::now(),
                };
                self.next_id += 1;
                if o.job.size == 0 {
                    self.hand_to_finisher(o, fin_tx);
                } else {
                    self.open.push(o);
                }
            }
            Err(e) => self.fail(e),
        }
    }

    /// An object the stonewall stopped: reported like a finished one, flagged.
    pub(super) fn cut(&mut self, r: ObjectResult) {
        match &self.done {
            Some(d) => {
                let _ = d.send(r);
            }
            None => self.stats.objects.push(r),
        }
    }

    /// With the wall up: every open object with no write in flight and not whole is aborted and
    /// reported cut (whole ones were handed to the finisher as their last write completed).
    pub(super) fn cut_open(&mut self) {
        let mut i = 0;
        while i < self.open.len() {
            let o = &self.open[i];
            if o.in_flight == 0 && o.writer.is_some() && o.written < o.job.size {
                let mut o = self.open.swap_remove(i);
                if let Some(w) = o.writer.take() {
                    w.abort();
                }
                let (latency, at) = (o.started.elapsed(), Instant::now());
                self.cut(ObjectResult { name: o.job.name, size: o.written, crc32c: None, latency, at, cut: true });
            } else {
                i += 1;
            }
        }
    }

    /// Starts generating chunks while buffers are free; true if work was left for want of a buffer.
    pub(super) fn schedule(&mut self) -> bool {
        let exec = self.exec;
        if exec.walled() {
            self.cut_open();
            return false;
        }
        while !self.open.is_empty() {
            // Generating ahead of the workers only spreads the data over more of the pool: one chunk per
            // worker, and one waiting so that no worker waits for the coordinator, keep the buffers
            // in use few enough to stay in the last-level cache (all 16 buffers cost 30 %), and a
            // sink that needs more buffers holds them in flight, not here.
            if self.in_gen > exec.cfg.threads {
                return false;
            }
            let n = self.open.len();
            // An object whose writer gathers writes into parts is filled one whole part at a time, so
            // buffers are never spread over half-built parts of several objects with none complete.
            let mid_part = self.open.iter().position(|o| o.part > 0 && o.next % o.part != 0 && o.next < o.job.size);
            let Some(k) = mid_part
                .or_else(|| (0..n).map(|i| (self.rr + i) % n).find(|&k| self.open[k].next < self.open[k].job.size))
            else {
                return false;
            };
            let Some(mut buf) = exec.pool.try_take() else {
                return true;
            };
            self.rr = k + 1;
            let o = &mut self.open[k];
            let at = o.next;
            let len = (exec.write_size as u64).min(o.job.size - at) as usize;
            o.next += len as u64;
            o.in_flight += 1;
            self.in_gen += 1;
            let (gen, content, tx, obj, crc) =
                (exec.gen.clone(), o.job.content.clone(), self.tx.clone(), o.id, exec.cfg.crc && !exec.crc_aside);
            exec.workers.spawn(move || {
                let t = Instant::now();
                let crc = fill_tiled(&content, &gen, at, &mut buf.as_mut_slice()[..len], crc);
                let _ = tx.send(Event::Generated { obj, offset: at, len, buf, crc, took: t.elapsed() });
            });
        }
        false
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn generated(
        &mut self,
        obj: usize,
        offset: u64,
        len: usize,
        buf: Buffer,
        crc: Option<u32>,
        took: Duration,
        cancel: &AtomicBool,
    ) {
        self.in_gen -= 1;
        self.exec.split.generated(took);
        let stopping = self.stopping(cancel);
        let Some(o) = self.open.iter_mut().find(|o| o.id == obj) else {
            return;
        };
        // With the wall up no new write starts (the object will be cut once its writes in flight end).
        if stopping || o.writer.is_none() || self.exec.walled() {
            o.in_flight -= 1;
            return; // dropping `buf` returns it to the pool
        }
        // Taken here while the generator threads make the next chunks (the chunk is still in the
        // shared last-level cache).
        let crc = crc.or_else(|| {
            self.exec
                .crc_aside
                .then(|| crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &buf.as_slice()[..len]) as u32)
        });
        if let Some(c) = crc {
            o.crc.add(offset, c, len as u64);
        }
        self.in_io += 1;
        self.exec.split.write_started();
        let tx = self.tx.clone();
        let submitted = Instant::now();
        let done = Box::new(move |result: Result<()>| {
            let _ = tx.send(Event::Written { obj, len, result, took: submitted.elapsed() });
        });
        o.writer.as_mut().expect("a writer until stopping").submit(WriteReq { offset, len, buf, done });
    }

    pub(super) fn written(
        &mut self,
        obj: usize,
        len: usize,
        result: Result<()>,
        took: Duration,
        fin_tx: &Sender<ToFinish<'s>>,
    ) {
        self.in_io -= 1;
        self.exec.split.write_done();
        self.stats.ops += 1;
        let _ = self.stats.op_latency.record((took.as_micros() as u64).max(1));
        let Some(i) = self.open.iter().position(|o| o.id == obj) else {
            return;
        };
        self.open[i].in_flight -= 1;
        match result {
            Err(e) => self.fail(e),
            Ok(()) => {
                self.stats.bytes += len as u64;
                self.open[i].written += len as u64;
                let o = &self.open[i];
                if o.written == o.job.size && o.writer.is_some() && self.failure.is_none() {
                    let o = self.open.swap_remove(i);
                    self.hand_to_finisher(o, fin_tx);
                }
            }
        }
    }

    pub(super) fn hand_to_finisher(&mut self, mut o: Open<'s>, fin_tx: &Sender<ToFinish<'s>>) {
        let exec = self.exec;
        let writer = o.writer.take().expect("open object has a writer");
        let crc32c = exec.cfg.crc.then_some(o.crc.prefix);
        let result = ObjectResult {
            name: o.job.name,
            size: o.job.size,
            crc32c,
            latency: Duration::ZERO,
            at: Instant::now(),
            cut: false,
        };
        self.finishing += 1;
        if let Err(e) = fin_tx.send(ToFinish { writer, result, started: o.started }) {
            // The finisher is gone (it cannot be, while we hold its channel); abort rather than leak.
            self.finishing -= 1;
            e.into_inner().writer.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_chain_in_any_order_is_the_whole_objects_crc() {
        let data: Vec<u8> = (0..100_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let whole = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &data) as u32;
        let chunk = 4096;
        let mut pieces: Vec<(u64, &[u8])> =
            data.chunks(chunk).enumerate().map(|(i, c)| ((i * chunk) as u64, c)).collect();
        // Arrival order: reversed pairs, so most chunks come ahead of their predecessor.
        pieces.chunks_mut(2).for_each(|p| p.reverse());
        let mut chain = CrcChain::default();
        for (at, c) in pieces {
            chain.add(at, crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, c) as u32, c.len() as u64);
            assert!(chain.ahead.len() <= 1, "more held back than the chunks in flight");
        }
        assert_eq!(chain.done, data.len() as u64);
        assert_eq!(chain.prefix, whole);
    }
}
