//! The host side of reads, stats, lists, deletes, phases and pauses (contract 1.1).
//!
//! A read goes to the run's reader threads ([`crate::read`]) and returns at once; `wait-reads`
//! collects what finished. The plugin learns per read only the byte count, its timing and whether
//! its check passed: the first differing offset and the bytes found go to the user's report (a
//! plugin told where its guess first differs could read storage byte by byte). Every record the host
//! keeps for it — a read in flight or unreported, a phase, a failure line — is charged to its budget.
//! A read, stat, list or delete that cannot be done at all is the run's error (exit 3), once the
//! plugin has been told.

use super::budget::cost;
use super::{HostResult, HostState, HostTrap, Named};
use crate::error::Error;
use crate::object::Content;
use crate::pipeline::read::{Check, Expected, Outcome, ReadReq, Reads, Require};
use crate::plugin::dgen::plugin::types as wit;
use crate::untrusted::sanitize;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Failed reads kept with their offset for the report; the rest are counted.
const KEPT_FAILURES: usize = 1000;

impl HostState {
    /// Counts a finished object in the phase it was committed in, and keeps its CRC for reads. An
    /// object the stonewall cut counts its bytes and is counted apart (true: it was cut).
    pub(super) fn attribute(&mut self, r: &crate::pipeline::executor::ObjectResult) -> bool {
        let phase = match self.names.get_mut(&r.name) {
            Some(Named::Committed { phase, durable, crc32c, cut, .. }) => {
                *durable = !r.cut;
                *cut = r.cut;
                *crc32c = r.crc32c;
                *phase
            }
            _ => self.phases.len() - 1,
        };
        if r.cut {
            self.cut += 1;
        }
        if let Some(p) = self.phases.get_mut(phase) {
            p.counts.written += r.size;
            if r.cut {
                p.counts.cut_objects += 1;
                if r.size > 0 {
                    p.timeline.add(r.at.saturating_duration_since(p.started).as_millis() as u64, r.size);
                    p.last_done = Some(p.last_done.map_or(r.at, |t| t.max(r.at)));
                }
            } else {
                p.counts.writes += 1;
                p.done(r.at, r.latency, r.size);
            }
        }
        r.cut
    }

    /// A name a plugin passes to `open` or a storage call: one that could leave the target root, or
    /// that the target cannot hold, traps (`what` says which argument it was).
    pub(super) fn storage_name(&mut self, name: &str, what: &str) -> wasmtime::Result<()> {
        if let Err(e) = crate::sink::check_name(name, &self.caps) {
            let reason = match e {
                Error::InvalidValue { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(self.violate(format!("{what} '{}' {reason}", sanitize(name, 200))));
        }
        Ok(())
    }

    /// A storage call's failure: the plugin is told (in its own terms), and the run fails with it.
    fn op_failed(&mut self, name: &str, e: Error) -> String {
        let told = self.tell(name, &e);
        self.read_error.get_or_insert(e);
        told
    }

    pub(super) fn read_inner(&mut self, name: String, offset: u64, len: Option<u64>, check: Check) -> HostResult<()> {
        self.storage_name(&name, "object name")?;
        if offset.checked_add(len.unwrap_or(0)).is_none_or(|end| end > super::MAX_STREAM) {
            return Ok(Err(format!(
                "'{}': a read of bytes {offset}..{offset}+{} is beyond any object's end",
                sanitize(&name, 200),
                len.map_or("end".to_string(), |l| l.to_string())
            )));
        }
        let (expected, require) = match self.names.get(&name) {
            Some(Named::Open) => {
                return Ok(Err(format!("'{}' is being described: commit it before reading it", sanitize(&name, 200))))
            }
            Some(Named::Declared { recipe, identity }) => (
                Some(Expected { content: Content::Recipe(recipe.clone()), size: recipe.size(), crc32c: None }),
                Require::Exactly(*identity),
            ),
            Some(Named::Committed { recipe, identity, .. }) => {
                let (recipe, identity) = (recipe.clone(), *identity);
                if self.ctx.mode == crate::plugin::host::Mode::Write {
                    // Read what is durable: wait for its write.
                    if let Err(e) = self.wait_durable(&name)? {
                        return Ok(Err(e));
                    }
                }
                let crc32c = match self.names.get(&name) {
                    Some(Named::Committed { crc32c, .. }) => *crc32c,
                    _ => None,
                };
                // Under `dgen-engine verify` nothing was written in this run: it is as declared.
                let require = identity.map_or(Require::Written, Require::Exactly);
                (Some(Expected { content: Content::Recipe(recipe.clone()), size: recipe.size(), crc32c }), require)
            }
            None => (None, Require::Any),
        };
        if check == Check::Verify && expected.is_none() {
            return Ok(Err(format!(
                "'{}': a verify read needs the object committed or declared in this run",
                sanitize(&name, 200)
            )));
        }
        self.charge(crate::pipeline::read::held_per_read() + 2 * name.len(), "issuing a read")?;
        if self.reads.is_none() {
            // The reader threads keep up to MAX_OPEN objects open for the plugin's reads: charged
            // once, as a full set with names of the longest kind.
            let held = crate::pipeline::read::MAX_OPEN * (cost::OPEN_READER + 1024);
            self.charge(held, "starting the reader threads (the objects they keep open)")?;
            let reads = Reads::start(
                self.ctx.sink.clone(),
                self.ctx.read_pool.clone(),
                self.gens[0].1.clone(),
                self.ctx.read_depth,
                self.read_tx.clone(),
                self.ctx.cancel.clone(),
                self.ctx.split.clone(),
            );
            match reads {
                Ok(r) => {
                    if self.ctx.stonewall {
                        r.set_wall(self.ctx.world.wall().clone());
                    }
                    self.reads = Some(r)
                }
                Err(e) => return Ok(Err(self.op_failed(&name, e))),
            }
        }
        let seq = self.reads_issued;
        self.reads_issued += 1;
        let tag = self.phases.len() - 1;
        let req = ReadReq { name, require, offset, len, check, expected, tag, seq };
        self.reads.as_ref().expect("reader started").submit(req);
        Ok(Ok(()))
    }

    /// Takes a finished read into its phase and the report; keeps it for `wait-reads`.
    pub(super) fn receive_read(&mut self, r: crate::pipeline::read::ReadResult) -> wasmtime::Result<()> {
        self.reads_received += 1;
        if let Some(p) = self.phases.get_mut(r.tag) {
            p.counts.read += r.bytes;
            if matches!(r.outcome, Outcome::Cut) {
                // Its bytes count; it is not a read done (nor is its time a latency).
                p.counts.cut_reads += 1;
                p.timeline.add(r.at.saturating_duration_since(p.started).as_millis() as u64, r.bytes);
                if r.bytes > 0 {
                    p.last_done = Some(p.last_done.map_or(r.at, |t| t.max(r.at)));
                }
            } else {
                p.counts.reads += 1;
                p.done(r.at, r.latency, r.bytes);
            }
            let _ = p.ttfb.record((r.ttfb.as_micros() as u64).clamp(1, 3_600_000_000));
            if matches!(r.outcome, Outcome::Failed(_)) {
                p.counts.read_failures += 1;
            }
            if let Some((share, size)) = r.cached {
                p.cache_known = true;
                p.cached_bytes += share * size as f64;
                p.opened_bytes += size;
            }
            if self.read_told.elapsed() >= Duration::from_millis(250) {
                self.read_told = Instant::now();
                let (phase, bytes, seconds) = (sanitize(&p.name, 64), p.counts.read, p.started.elapsed().as_secs_f64());
                self.ctx.events.emit(crate::events::Event::Read { phase, bytes, seconds });
            }
        }
        match &r.outcome {
            Outcome::Failed(v) => {
                self.read_failure_count += 1;
                if self.read_failures.len() < KEPT_FAILURES {
                    self.charge(cost::READ_FAILURE + r.name.len(), "recording a failed read")?;
                    self.read_failures.push((r.name.clone(), r.offset, v.clone()));
                }
            }
            Outcome::Error(e) => {
                self.read_error.get_or_insert(e.clone());
            }
            Outcome::Passed | Outcome::Cut => {}
        }
        let charge = crate::pipeline::read::held_per_read() + 2 * r.name.len();
        self.reads_unreported.push((r, charge));
        Ok(())
    }

    pub(super) fn wait_reads_inner(&mut self) -> HostResult<Vec<wit::ReadStats>> {
        let t = Instant::now();
        while self.reads_received < self.reads_issued {
            match self.read_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(r) => self.receive_read(r)?,
                Err(_) => {
                    if self.cancelled() {
                        self.blocked += t.elapsed();
                        return Err(self.interrupted_trap());
                    }
                }
            }
        }
        self.blocked += t.elapsed();
        let mut done = std::mem::take(&mut self.reads_unreported);
        done.sort_by_key(|(r, _)| r.seq);
        let mut out = Vec::with_capacity(done.len());
        let mut failed = None;
        for (r, charge) in done {
            self.release(charge);
            if let Outcome::Error(e) = &r.outcome {
                if failed.is_none() {
                    failed = Some(self.tell(&r.name, e));
                }
            }
            out.push(wit::ReadStats {
                passed: matches!(r.outcome, Outcome::Passed),
                name: r.name,
                offset: r.offset,
                bytes: r.bytes,
                latency_us: r.latency.as_micros() as u64,
                ttfb_us: r.ttfb.as_micros() as u64,
            });
        }
        if let Some(m) = failed {
            return Ok(Err(m));
        }
        Ok(Ok(out))
    }

    /// Ends the run's reads: waits for those in flight, and takes in what finished.
    pub(super) fn finish_reads(&mut self) {
        self.reads.take();
        while let Ok(r) = self.read_rx.try_recv() {
            let _ = self.receive_read(r);
        }
        let unreported = std::mem::take(&mut self.reads_unreported);
        for (_, charge) in unreported {
            self.release(charge);
        }
    }

    /// Times a storage call that blocks the plugin, as an operation of the current phase.
    fn timed<T>(
        &mut self,
        f: impl FnOnce(&dyn crate::sink::Sink) -> crate::error::Result<T>,
    ) -> crate::error::Result<T> {
        let t = Instant::now();
        let r = f(self.ctx.sink.as_ref());
        let took = t.elapsed();
        self.blocked += took;
        let p = self.phases.last_mut().expect("a phase");
        p.counts.meta_ops += 1;
        p.done(Instant::now(), took, 0);
        r
    }

    pub(super) fn stat_inner(&mut self, name: String) -> HostResult<Option<u64>> {
        self.storage_name(&name, "object name")?;
        let info = match self.timed(|s| s.stat(&name)) {
            Ok(info) => info,
            Err(e) => return Ok(Err(self.op_failed(&name, e))),
        };
        // The engine's objects only: what this run wrote, what was declared with its identity,
        // anything else carrying an identity. The rest is not there, as far as the plugin can tell.
        let visible = |i: &crate::sink::ObjectInfo| match self.names.get(&name) {
            // Written whole in this run (a write that failed, say over a foreign object, is not).
            Some(Named::Committed { durable: true, .. }) if self.ctx.mode == crate::plugin::host::Mode::Write => true,
            Some(Named::Declared { identity, .. }) => i.identity == Some(*identity),
            _ => i.identity.is_some(),
        };
        Ok(Ok(info.filter(visible).map(|i| i.size)))
    }

    pub(super) fn list_inner(&mut self, prefix: String) -> HostResult<wit::Listing> {
        if prefix.chars().any(char::is_control) || prefix.starts_with('/') || prefix.split('/').any(|c| c == "..") {
            return Err(
                self.violate(format!("list prefix '{}' must stay below the target root", sanitize(&prefix, 200)))
            );
        }
        // A listing is host work done for the plugin, however long the root: it runs on the
        // plugin's own time (its deadline) and stops at Ctrl-C.
        let (cancel, deadline, clock, blocked) =
            (self.ctx.cancel.clone(), self.limits.deadline, self.clock, self.blocked);
        let stop = move || cancel.load(Ordering::Relaxed) || clock.elapsed().saturating_sub(blocked) > deadline;
        let t = Instant::now();
        let r = self.ctx.sink.list(&prefix, &stop);
        let p = self.phases.last_mut().expect("a phase");
        p.counts.meta_ops += 1;
        p.done(Instant::now(), t.elapsed(), 0);
        match r {
            Ok(l) => Ok(Ok(wit::Listing { count: l.count, bytes: l.bytes })),
            Err(Error::Cancelled) if self.cancelled() => Err(self.interrupted_trap()),
            Err(Error::Cancelled) => {
                self.deadline_hit = true;
                Err(wasmtime::Error::new(HostTrap::Deadline))
            }
            Err(e) => Ok(Err(self.op_failed(&prefix, e))),
        }
    }

    pub(super) fn delete_inner(&mut self, name: String) -> HostResult<()> {
        self.storage_name(&name, "object name")?;
        if self.ctx.mode == crate::plugin::host::Mode::Verify {
            // `dgen-engine verify` reads and compares; it changes nothing on storage.
            return Err(self.violate(format!(
                "called delete('{}') under `dgen-engine verify`, which changes nothing on storage",
                sanitize(&name, 200)
            )));
        }
        if matches!(self.names.get(&name), Some(Named::Open)) {
            return Ok(Err(format!("'{}' is being described: it cannot be deleted", sanitize(&name, 200))));
        }
        match self.timed(|s| s.delete(&name)) {
            Ok(()) => Ok(Ok(())),
            // Telling the plugin is enough: deleting what is not there is its business.
            Err(Error::NotFound { .. }) => Ok(Err(super::no_such(&name))),
            Err(e) => Ok(Err(self.op_failed(&name, e))),
        }
    }
}
