//! Synthetic fills: one generator and stream cursor per data profile a run uses (the run's own, and
//! each distinct `fill`/`fill-ext` profile, charged for its copy table), and a fill appended to a
//! draft as a `Fill` segment continuing the stream where the last one ended.

use super::budget::cost;
use super::{Draft, HostResult, HostState, MAX_STREAM};
use crate::error::Error;
use crate::generator::{DataKeys, Generator, Profile};
use crate::plugin::dgen::plugin::types::{self as wit, DataProfile};
use crate::size::format_size;
use crate::untrusted::sanitize;
use std::sync::Arc;
use wasmtime::component::Resource;

impl HostState {
    pub(super) fn generator(&mut self, profile: Option<DataProfile>) -> wasmtime::Result<Result<usize, String>> {
        let p = match profile {
            None => return Ok(Ok(0)),
            // The run's unit and extent: a fill's own profile changes its ratios, not where copies fall.
            Some(p) => match Profile::new(p.dedup, p.compress, self.ctx.profile.unit())
                .and_then(|q| q.with_extent(self.ctx.profile.extent()))
            {
                Ok(p) => p,
                Err(e) => return Ok(Err(e.to_string())),
            },
        };
        self.generator_of(p)
    }

    /// The generator of `p` (made once per distinct profile, each with a stream of its own so its
    /// blocks never collide with the run's), charged to the plugin: its copy table can be megabytes.
    pub(super) fn generator_of(&mut self, p: Profile) -> wasmtime::Result<Result<usize, String>> {
        if let Some(i) = self.gens.iter().position(|(q, _, _)| *q == p) {
            return Ok(Ok(i));
        }
        let gen = Generator::new(self.ctx.seed, p.clone())
            .for_rank(self.ctx.world.rank().into(), self.ctx.world.size().into());
        self.charge(std::mem::size_of::<Generator>() + gen.table_bytes(), "data profiles")?;
        self.gens.push((p, Arc::new(gen), 0));
        Ok(Ok(self.gens.len() - 1))
    }

    /// Appends `len` bytes of generator `g`'s stream to a target.
    pub(super) fn fill_from(&mut self, t: Resource<Draft>, len: u64, g: usize) -> HostResult<()> {
        let unit = self.ctx.profile.unit();
        let cursor = self.gens[g].2;
        // A fill right after a fill of the same stream on this target, with nothing taken from the
        // stream in between, continues it: consecutive fills are one segment.
        let target = self.target(&t)?;
        let continues = target.pending.is_empty() && target.recipe.trailing_fill() == Some((g as u64, cursor));
        let offset = if continues { cursor } else { cursor.div_ceil(unit) * unit };
        if offset.checked_add(len).is_none_or(|end| end > MAX_STREAM) {
            let name = sanitize(&self.target(&t)?.name, 200);
            return Ok(Err(format!(
                "'{name}': a fill of {} would run past the end of the run's data stream ({} per data profile)",
                format_size(len),
                format_size(MAX_STREAM)
            )));
        }
        self.gens[g].2 = offset + len;
        let gen = self.gens[g].1.clone();
        self.with_target(&t, 2 * cost::SEGMENT, "filling", |target| {
            target.flush();
            target.recipe.push_fill(&gen, g as u64, offset, len);
        })?;
        Ok(Ok(()))
    }

    /// A `fill-ext` profile as the engine's, checked as a workload's `[data]` is; errors name the field.
    pub(super) fn profile_ext(&self, p: wit::DataProfileExt) -> Result<Profile, String> {
        use crate::generator::copies::CopySpec;
        const MAX_ROWS: usize = 4096;
        let field = |e: Error| match e {
            Error::InvalidValue { key, value, reason } => {
                format!("fill-ext: {} = {value}: {reason}", key.trim_start_matches("data.").replace('_', "-"))
            }
            other => format!("fill-ext: {other}"),
        };
        let copies = match p.dedup_copies {
            wit::DedupCopies::Even => None,
            wit::DedupCopies::Zipf(s) => Some(CopySpec::Zipf(s)),
            wit::DedupCopies::Histogram(rows) if rows.len() > MAX_ROWS => {
                return Err(format!("fill-ext: a histogram of {} rows; at most {MAX_ROWS}", rows.len()))
            }
            wit::DedupCopies::Histogram(rows) => {
                Some(CopySpec::histogram(std::path::Path::new(""), rows).map_err(field)?)
            }
        };
        // With a histogram, dedup 0 takes the ratio it implies.
        let implied = matches!(copies, Some(CopySpec::Histogram { .. })) && p.dedup == 0.0;
        let mix = (!p.compress_mix.is_empty()).then_some(p.compress_mix);
        let run = &self.ctx.profile;
        Profile::from_keys(DataKeys {
            dedup: (!implied).then_some(p.dedup),
            compress: if mix.is_some() { 1.0 } else { p.compress },
            unit: run.unit(),
            // 0 is the run's extent (explicitly: a mix here does not bring its own default).
            extent: Some(if p.dedup_extent == 0 { run.extent() } else { p.dedup_extent }),
            mix,
            copies,
        })
        .map_err(field)
    }
}

pub(super) fn profile_rows(p: &wit::DataProfileExt) -> usize {
    match &p.dedup_copies {
        wit::DedupCopies::Histogram(rows) => rows.len(),
        _ => 0,
    }
}
