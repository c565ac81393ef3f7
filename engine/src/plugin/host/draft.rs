//! An object being described: the host side of the WIT `target` resource. Plugin bytes become
//! `Bytes` segments of a [`Recipe`] (small writes coalesce), fills `Fill` segments, fields and
//! reserved regions zero placeholders resolved at commit. Every change is charged to the budget by
//! the difference in what the draft holds.

use super::budget::cost;
use super::commit::field_len;
use super::fills::profile_rows;
use super::{HostResult, HostState, Named};
use crate::object::{Recipe, Segment};
use crate::plugin::dgen::plugin::host::HostTarget;
use crate::plugin::dgen::plugin::types::{self as wit, DataProfile, FieldKind};
use crate::size::format_size;
use crate::untrusted::sanitize;
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};

/// A target being described.
pub struct Draft {
    pub(super) name: String,
    pub(super) size_hint: Option<u64>,
    pub(super) recipe: Recipe,
    /// Plugin bytes not yet pushed as a segment (small writes coalesce).
    pub(super) pending: Vec<u8>,
    /// (segment index, length, patched) of reserved regions.
    pub(super) reserves: Vec<(usize, u32, bool)>,
    /// (segment index, kind) of host-computed fields, in order.
    pub(super) fields: Vec<(usize, FieldKind)>,
    /// Plugin-made bytes held in segments.
    pub(super) held: usize,
}

impl Draft {
    pub(super) fn flush(&mut self) {
        if !self.pending.is_empty() {
            let bytes: Arc<[u8]> = std::mem::take(&mut self.pending).into();
            self.held += bytes.len() + cost::ALLOCATION;
            self.recipe.push(Segment::Bytes(bytes));
        }
    }

    pub(super) fn size(&self) -> u64 {
        self.recipe.size() + self.pending.len() as u64
    }

    /// What the host holds for this target, as charged to the budget.
    pub(super) fn footprint(&self) -> usize {
        cost::TARGET
            + 2 * self.name.len()
            + self.recipe.segment_count() * cost::SEGMENT
            + self.held
            + 2 * self.pending.capacity()
            + cost::ENTRY * (self.reserves.len() + self.fields.len())
    }
}

impl HostState {
    /// Targets still open when the plugin stops are dropped: nothing of them is written.
    pub fn abort_open_targets(&mut self) {
        self.table = ResourceTable::new();
        self.open_targets = 0;
        self.names.retain(|_, n| !matches!(n, Named::Open));
    }

    /// Runs `f` on a target, charging the change in what the host holds for it. `growth` is what the
    /// call may add at most, checked before `f` runs, so nothing is allocated past the limit.
    pub(super) fn with_target<R>(
        &mut self,
        t: &Resource<Draft>,
        growth: usize,
        what: &str,
        f: impl FnOnce(&mut Draft) -> R,
    ) -> wasmtime::Result<R> {
        self.fits(growth, what)?;
        let target = self.table.get_mut(t).map_err(|e| wasmtime::format_err!("bad target handle: {e}"))?;
        let before = target.footprint();
        let r = f(target);
        let after = target.footprint();
        if after >= before {
            self.budget.host += after - before;
        } else {
            self.release(before - after);
        }
        Ok(r)
    }

    pub(super) fn target(&mut self, t: &Resource<Draft>) -> wasmtime::Result<&mut Draft> {
        self.table.get_mut(t).map_err(|e| wasmtime::format_err!("bad target handle: {e}"))
    }

    /// Whether a target may grow by `len` bytes: within what the sink takes for one object.
    pub(super) fn check_growth(&mut self, t: &Resource<Draft>, len: u64) -> wasmtime::Result<Result<(), String>> {
        let max = self.caps.max_object;
        let target = self.target(t)?;
        match target.size().checked_add(len) {
            Some(n) if n <= max => Ok(Ok(())),
            _ => Ok(Err(format!(
                "'{}' would be larger than the {} the target takes for one object",
                sanitize(&target.name, 200),
                format_size(max)
            ))),
        }
    }

    pub(super) fn write_bytes(&mut self, t: Resource<Draft>, bytes: Vec<u8>) -> HostResult<()> {
        if let Err(e) = self.check_growth(&t, bytes.len() as u64)? {
            return Ok(Err(e));
        }
        self.plugin_bytes += bytes.len() as u64;
        if self.plugin_bytes > self.limits.max_plugin_bytes {
            let m = format!("wrote more than {} plugin-made bytes in this run", self.limits.max_plugin_bytes);
            return Err(self.violate(m));
        }
        let growth = 2 * bytes.len() + cost::SEGMENT;
        self.with_target(&t, growth, "writing bytes", |target| target.pending.extend_from_slice(&bytes))?;
        Ok(Ok(()))
    }

    pub(super) fn patch_bytes(&mut self, t: Resource<Draft>, region: u32, bytes: Vec<u8>) -> HostResult<()> {
        let target = self.target(&t)?;
        let Some(r) = target.reserves.get(region as usize) else {
            return Ok(Err(format!("no reserved region {region}")));
        };
        if bytes.len() != r.1 as usize {
            return Ok(Err(format!("region {region} is {} bytes, the patch {}", r.1, bytes.len())));
        }
        self.with_target(&t, 0, "patching a region", |target| {
            let r = &mut target.reserves[region as usize];
            let idx = r.0;
            // The region's bytes were charged when it was reserved.
            r.2 = true;
            if !bytes.is_empty() {
                target.recipe.replace(idx, Segment::Bytes(bytes.into()));
            }
        })?;
        Ok(Ok(()))
    }

    pub(super) fn open_target(&mut self, name: String, size_hint: Option<u64>) -> HostResult<Resource<Draft>> {
        self.storage_name(&name, "target name")?;
        if self.names.contains_key(&name) {
            return Ok(Err(format!(
                "'{}' was already opened in this run: each name is written once per run",
                sanitize(&name, 200)
            )));
        }
        if self.open_targets >= self.limits.max_open_targets {
            let m = format!("more than {} targets open at once", self.limits.max_open_targets);
            return Err(self.violate(m));
        }
        let state = Draft {
            name: name.clone(),
            size_hint,
            recipe: Recipe::default(),
            pending: Vec::new(),
            reserves: Vec::new(),
            fields: Vec::new(),
            held: 0,
        };
        self.charge(state.footprint(), "opening a target")?;
        let r = self.table.push(state).map_err(|e| wasmtime::format_err!("{e}"))?;
        self.names.insert(name, Named::Open);
        self.open_targets += 1;
        Ok(Ok(r))
    }
}

impl HostTarget for HostState {
    fn write(&mut self, t: Resource<Draft>, bytes: Vec<u8>) -> HostResult<()> {
        self.write_bytes(t, bytes)
    }

    fn fill(&mut self, t: Resource<Draft>, len: u64, profile: Option<DataProfile>) -> HostResult<()> {
        if let Err(e) = self.check_growth(&t, len)? {
            return Ok(Err(e));
        }
        let g = match self.generator(profile)? {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        self.fill_from(t, len, g)
    }

    fn fill_ext(&mut self, t: Resource<Draft>, len: u64, profile: wit::DataProfileExt) -> HostResult<()> {
        // What the plugin handed over is held for this call: charged while it is checked.
        let held = profile.compress_mix.len() * 16 + profile_rows(&profile) * 16;
        self.charge(held, "a fill-ext profile")?;
        let p = self.profile_ext(profile);
        self.release(held);
        if let Err(e) = self.check_growth(&t, len)? {
            return Ok(Err(e));
        }
        let g = match p {
            Ok(p) => match self.generator_of(p)? {
                Ok(g) => g,
                Err(e) => return Ok(Err(e)),
            },
            Err(e) => return Ok(Err(e)),
        };
        self.fill_from(t, len, g)
    }

    fn write_field(&mut self, t: Resource<Draft>, kind: FieldKind) -> HostResult<()> {
        if let Err(e) = self.check_growth(&t, field_len(kind))? {
            return Ok(Err(e));
        }
        self.with_target(&t, 3 * cost::SEGMENT, "adding a field", |target| {
            target.flush();
            let idx = target.recipe.segment_count();
            target.recipe.push(Segment::Zeros(field_len(kind)));
            target.fields.push((idx, kind));
        })?;
        Ok(Ok(()))
    }

    fn reserve(&mut self, t: Resource<Draft>, len: u32) -> HostResult<u32> {
        if len as usize > self.limits.max_write {
            let m = format!("reserve of {len} bytes exceeds the {} bytes allowed per call", self.limits.max_write);
            return Err(self.violate(m));
        }
        if let Err(e) = self.check_growth(&t, len as u64)? {
            return Ok(Err(e));
        }
        self.plugin_bytes += len as u64;
        if self.plugin_bytes > self.limits.max_plugin_bytes {
            let m = format!("wrote more than {} plugin-made bytes in this run", self.limits.max_plugin_bytes);
            return Err(self.violate(m));
        }
        // The region's bytes are charged now: the patch will hold them.
        let growth = len as usize + 3 * cost::SEGMENT;
        let region = self.with_target(&t, growth, "reserving a region", |target| {
            target.flush();
            let idx = target.recipe.segment_count();
            target.recipe.push(Segment::Zeros(len as u64));
            target.reserves.push((idx, len, len == 0));
            target.held += len as usize;
            (target.reserves.len() - 1) as u32
        })?;
        Ok(Ok(region))
    }

    fn patch(&mut self, t: Resource<Draft>, region: u32, bytes: Vec<u8>) -> HostResult<()> {
        self.patch_bytes(t, region, bytes)
    }

    fn size(&mut self, t: Resource<Draft>) -> wasmtime::Result<u64> {
        Ok(self.target(&t)?.size())
    }

    fn commit(&mut self, t: Resource<Draft>) -> HostResult<()> {
        self.commit_inner(t, false)
    }

    fn declare(&mut self, t: Resource<Draft>) -> HostResult<()> {
        self.commit_inner(t, true)
    }

    fn drop(&mut self, t: Resource<Draft>) -> wasmtime::Result<()> {
        // Dropped without commit: nothing was handed to the sink, so nothing to undo.
        if let Ok(target) = self.table.delete(t) {
            self.open_targets -= 1;
            self.release(target.footprint());
            self.names.remove(&target.name);
        }
        Ok(())
    }
}
