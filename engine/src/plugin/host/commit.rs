//! `commit` and `declare`: a draft becomes an object. Its fields are resolved (CRC32C and lengths
//! over the bytes before them, host work counted against the plugin's deadline), its charge becomes
//! the committed object's, and it goes to the executor as a job — or, under `dgen-engine verify`, is
//! read back and compared at once.

use super::budget::cost;
use super::{Draft, HostResult, HostState, HostTrap, Mode, Named};
use crate::events::Event;
use crate::object::{Content, Recipe, Segment};
use crate::pipeline::executor::{ObjectJob, ObjectResult};
use crate::pipeline::verify::Verdict;
use crate::plugin::dgen::plugin::types::FieldKind;
use crate::untrusted::sanitize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Resource;

impl HostState {
    pub(super) fn commit_inner(&mut self, t: Resource<Draft>, declare: bool) -> HostResult<()> {
        let mut target = match self.table.delete(t) {
            Ok(target) => target,
            Err(e) => return Err(wasmtime::format_err!("bad target handle: {e}")),
        };
        self.open_targets -= 1;
        let footprint = target.footprint();
        if let Some((i, _)) = target.reserves.iter().enumerate().find(|(_, r)| !r.2) {
            self.release(footprint);
            self.names.remove(&target.name);
            return Ok(Err(format!("'{}': region {i} was reserved but never patched", sanitize(&target.name, 200))));
        }
        target.flush();
        if let Some(hint) = target.size_hint {
            if hint != target.recipe.size() && !self.ctx.quiet && self.logs.admit() {
                self.ctx.events.emit(Event::Note(format!(
                    "[{}] '{}' is {} bytes, its size hint said {hint}",
                    self.ctx.plugin,
                    sanitize(&target.name, 200),
                    target.recipe.size()
                )));
            }
        }
        let fields = std::mem::take(&mut target.fields);
        self.resolve_fields(&mut target.recipe, &fields)?;
        // The target's charge becomes the committed object's: its layout, and the records kept of it.
        let name = target.name;
        let keep =
            cost::OBJECT + cost::NAME_COPIES * name.len() + target.recipe.segment_count() * cost::SEGMENT + target.held;
        self.release(footprint);
        self.charge(keep, "committing an object")?;
        let recipe = Arc::new(target.recipe);
        let seq = self.committed;
        self.committed += 1;
        if declare {
            self.committed -= 1;
            let identity = crate::object::identity::Identity::of_recipe(&recipe);
            self.names.insert(name, Named::Declared { recipe, identity });
            return Ok(Ok(()));
        }
        // Under `dgen-engine verify` it is read only as described: its identity, worked out once.
        let identity = (self.ctx.mode == Mode::Verify).then(|| crate::object::identity::Identity::of_recipe(&recipe));
        let phase = self.phases.len() - 1;
        self.names.insert(
            name.clone(),
            Named::Committed {
                seq,
                recipe: recipe.clone(),
                verified: None,
                phase,
                durable: false,
                crc32c: None,
                cut: false,
                identity,
            },
        );
        match self.ctx.mode {
            Mode::Write => {
                let job = ObjectJob { name, size: recipe.size(), content: Content::Recipe(recipe) };
                let sent = self.ctx.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
                if !sent {
                    self.writes_stopped = true;
                    return Ok(Err("the run's writes have stopped (see the error report)".into()));
                }
            }
            Mode::Verify => {
                let started = Instant::now();
                let want = identity.expect("worked out under verify");
                let verdict = match self.read_back(&name, &recipe, want) {
                    Ok(v) => v,
                    Err(_) => return Err(self.interrupted_trap()),
                };
                // What `wait-all` tells the plugin: for an object of its that differs, the CRC of
                // what it described (so a manifest of CRCs it builds from them is the one it wrote,
                // not a second mismatch); for one it could not read, none; and for both no timing
                // (how long a comparison ran says where it stopped).
                let (crc32c, latency) = match &verdict {
                    Verdict::Identical { crc32c, .. } => (Some(*crc32c), started.elapsed()),
                    Verdict::Unreadable { .. } => (None, Duration::ZERO),
                    _ => (Some(self.intended_crc(&recipe)?), Duration::ZERO),
                };
                let (size, at) = (recipe.size(), Instant::now());
                let r = ObjectResult { name: name.clone(), size, crc32c, latency, at, cut: false };
                self.attribute(&r);
                self.finished.push(r.clone());
                self.unreported.push(r);
                let told = self.record_verdict(&name, verdict)?;
                if let Some(Named::Committed { verified, .. }) = self.names.get_mut(&name) {
                    *verified = Some(told);
                }
            }
        }
        Ok(Ok(()))
    }

    /// Computes the fields of a recipe in order, each over all bytes before it (earlier fields
    /// included). This is host work done for the plugin: it counts against the plugin's deadline and
    /// stops on Ctrl-C.
    pub(super) fn resolve_fields(
        &mut self,
        recipe: &mut Recipe,
        fields: &[(usize, FieldKind)],
    ) -> wasmtime::Result<()> {
        let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
        let mut pos = 0u64;
        for &(idx, kind) in fields {
            let at = recipe.segment_offset(idx);
            if matches!(kind, FieldKind::Crc32cLe | FieldKind::Crc32cBe) {
                // Earlier fields are resolved by now, so the digest covers their values.
                self.digest_recipe(recipe, pos..at, &mut digest, true)?;
                pos = pos.max(at);
            }
            let crc = digest.finalize() as u32;
            let value: Vec<u8> = match kind {
                FieldKind::Crc32cLe => crc.to_le_bytes().to_vec(),
                FieldKind::Crc32cBe => crc.to_be_bytes().to_vec(),
                FieldKind::LengthLe => at.to_le_bytes().to_vec(),
                FieldKind::LengthBe => at.to_be_bytes().to_vec(),
            };
            recipe.replace(idx, Segment::Bytes(value.into()));
        }
        Ok(())
    }

    /// Adds the bytes `range` of `recipe` to `digest`, regenerated 8 MiB at a time through the
    /// host's scratch (kept across calls, shrunk back to 8 MiB). Ctrl-C stops it; when `own_time`,
    /// it is host work done for the plugin and its deadline stops it too.
    pub(super) fn digest_recipe(
        &mut self,
        recipe: &Recipe,
        range: std::ops::Range<u64>,
        digest: &mut crc_fast::Digest,
        own_time: bool,
    ) -> wasmtime::Result<()> {
        use rayon::prelude::*;
        const PIECE: usize = 1 << 20;
        let mut buf = std::mem::take(&mut self.scratch);
        let mut pos = range.start;
        let result = loop {
            if pos >= range.end {
                break Ok(());
            }
            if self.ctx.cancel.load(Ordering::Relaxed) {
                break Err(self.interrupted_trap());
            }
            if own_time && self.own_time() > self.limits.deadline {
                self.deadline_hit = true;
                break Err(wasmtime::Error::new(HostTrap::Deadline));
            }
            let n = (range.end - pos).min(8 << 20) as usize;
            buf.resize(n, 0);
            buf.par_chunks_mut(PIECE).enumerate().for_each(|(i, c)| recipe.fill(pos + (i * PIECE) as u64, c));
            digest.update(&buf);
            pos += n as u64;
        };
        buf.clear();
        buf.shrink_to(8 << 20);
        self.scratch = buf;
        result
    }
}

pub(super) fn field_len(kind: FieldKind) -> u64 {
    match kind {
        FieldKind::Crc32cLe | FieldKind::Crc32cBe => 4,
        FieldKind::LengthLe | FieldKind::LengthBe => 8,
    }
}
