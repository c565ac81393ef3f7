//! Read-backs: an object read and compared with its recipe (`verify`, and every commit under
//! `dgen-engine verify`). The verdict, with the first differing offset and the bytes found, is the
//! user's; the plugin learns only identical or not, and the byte count.

use super::budget::cost;
use super::{HostState, Mode, Named};
use crate::error::Error;
use crate::object::{Content, Recipe};
use crate::pipeline::verify::{self, Verdict};
use crate::untrusted::sanitize;
use std::sync::Arc;
use std::time::Instant;

impl HostState {
    /// Reads an object back and compares it with its recipe. The verdict (with the offset and the
    /// bytes found) is the user's; the caller tells the plugin only identical or not.
    pub(super) fn read_back(
        &mut self,
        name: &str,
        recipe: &Arc<Recipe>,
        want: crate::object::identity::Identity,
    ) -> Result<Verdict, Error> {
        let t = Instant::now();
        let result = (|| {
            let reader = self.ctx.sink.open(name)?;
            // Only an object that carries `want`, the identity of this description, is compared:
            // anything else (a file the engine did not write, another object) is not what was
            // described. Where the store keeps no identities, only what this run wrote is read.
            let known = if self.ctx.sink.keeps_identity() {
                reader.identity() == Some(want)
            } else {
                self.ctx.mode == Mode::Write
            };
            if !known {
                return Err(Error::sink(
                    name,
                    "carries no identity of what was described: not an object this engine wrote with this content",
                ));
            }
            let content = Content::Recipe(recipe.clone());
            verify::compare_object(reader, &self.gens[0].1, &content, recipe.size(), &self.ctx.pool, &self.ctx.cancel)
        })();
        self.blocked += t.elapsed();
        match result {
            Err(Error::Cancelled) => Err(Error::Cancelled),
            Err(e) => Ok(Verdict::Unreadable { reason: e.to_string() }),
            Ok(v) => Ok(v),
        }
    }

    /// Records a read-back's verdict for the user; what the plugin may learn of it.
    pub(super) fn record_verdict(&mut self, name: &str, verdict: Verdict) -> wasmtime::Result<Result<u64, String>> {
        self.charge(cost::VERDICT + name.len(), "recording a read-back")?;
        let told = match &verdict {
            Verdict::Identical { bytes, .. } => Ok(*bytes),
            _ => Err(format!("'{}' does not match what was written (see the run's report)", sanitize(name, 200))),
        };
        self.verdicts.push((name.to_string(), verdict));
        Ok(told)
    }

    /// The CRC32C of the bytes `recipe` describes: what a whole write of it records, and what
    /// `wait-all` tells of an object that differs under `verify` (the plugin learns nothing of what
    /// storage holds from it, only what its own description makes). Regenerated in pieces through
    /// the host's scratch; the time is not the plugin's.
    pub(super) fn intended_crc(&mut self, recipe: &Recipe) -> wasmtime::Result<u32> {
        let t = Instant::now();
        let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
        let r = self.digest_recipe(recipe, 0..recipe.size(), &mut digest, false);
        self.blocked += t.elapsed();
        r.map(|()| digest.finalize() as u32)
    }

    pub(super) fn verify_inner(&mut self, name: &str) -> wasmtime::Result<Result<u64, String>> {
        let (recipe, identity) = match self.names.get(name) {
            Some(Named::Committed { verified: Some(told), .. }) => return Ok(told.clone()),
            Some(Named::Committed { recipe, identity, .. }) => (recipe.clone(), *identity),
            _ => return Ok(Err(format!("'{}' was not committed in this run", sanitize(name, 200)))),
        };
        if self.ctx.mode == Mode::Write {
            if let Err(e) = self.wait_durable(name)? {
                return Ok(Err(e));
            }
        }
        // A sink that keeps nothing has nothing to read back: not a mismatch, not done, said once
        // in the report. The plugin is told the object is whole (it was written whole).
        if !self.ctx.sink.keeps_data() {
            self.unverifiable += 1;
            let told = Ok(recipe.size());
            if let Some(Named::Committed { verified, .. }) = self.names.get_mut(name) {
                *verified = Some(told.clone());
            }
            return Ok(told);
        }
        // Written in this run: its identity is needed only now, once (a second verify is told the
        // first answer).
        let want = identity.unwrap_or_else(|| crate::object::identity::Identity::of_recipe(&recipe));
        let verdict = match self.read_back(name, &recipe, want) {
            Ok(v) => v,
            Err(_) => return Err(self.interrupted_trap()),
        };
        let told = self.record_verdict(name, verdict)?;
        if let Some(Named::Committed { verified, .. }) = self.names.get_mut(name) {
            *verified = Some(told.clone());
        }
        Ok(told)
    }
}
