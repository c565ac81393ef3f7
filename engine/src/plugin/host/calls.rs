//! The generated `host` interface, call by call: each forwards to the file of its concept, or is a
//! small answer of its own (`params`, `totals`, `facts`, `world-totals` …). The calls with
//! plugin-sized arguments reach these through `guarded.rs`, which checks the sizes first.

use super::logs::MAX_LOG_LINE;
use super::written::last_finish;
use super::{Draft, HostResult, HostState, Mode, Named};
use crate::events::Event;
use crate::plugin::dgen::plugin::host::Host;
use crate::plugin::dgen::plugin::types::{self as wit, LogLevel};
use crate::untrusted::sanitize;
use std::sync::atomic::Ordering;
use std::time::Instant;
use wasmtime::component::Resource;

// The calls taking plugin-sized arguments are reached through `guarded.rs`, which checks the sizes
// of their arguments in the plugin's memory first.
impl Host for HostState {
    fn open(&mut self, name: String, size_hint: Option<u64>) -> HostResult<Resource<Draft>> {
        self.open_target(name, size_hint)
    }

    fn wait_all(&mut self) -> HostResult<Vec<wit::ObjectStats>> {
        let t = Instant::now();
        self.wait_until(HostState::writes_ended);
        self.blocked += t.elapsed();
        if self.ctx.cancel.load(Ordering::Relaxed) {
            return Err(self.interrupted_trap());
        }
        // Cut objects are not among those returned: what was written whole is.
        if !self.writes_ended() {
            return Ok(Err("the run's writes have stopped (see the error report)".into()));
        }
        // Completion order varies from run to run; commit order does not.
        let names = &self.names;
        let seq = |n: &str| match names.get(n) {
            Some(Named::Committed { seq, .. }) => *seq,
            _ => u64::MAX,
        };
        self.unreported.sort_by_key(|r| seq(&r.name));
        let out = self
            .unreported
            .drain(..)
            .map(|r| wit::ObjectStats {
                name: r.name,
                size: r.size,
                crc32c: r.crc32c.unwrap_or(0),
                latency_us: r.latency.as_micros() as u64,
            })
            .collect();
        Ok(Ok(out))
    }

    fn job(&mut self, spec: String) -> HostResult<wit::JobResult> {
        self.run_job(spec)
    }

    fn verify(&mut self, name: String) -> HostResult<u64> {
        self.verify_inner(&name)
    }

    fn params(&mut self) -> wasmtime::Result<String> {
        Ok(self.ctx.params_json.clone())
    }

    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.log_line(level, &message);
        Ok(())
    }

    fn metric(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        self.add_metric(name, value)
    }

    fn totals(&mut self) -> wasmtime::Result<wit::RunTotals> {
        Ok(wit::RunTotals {
            bytes: self.finished.iter().map(|r| r.size).sum(),
            objects: self.finished.len() as u64,
            // To the last object finished so far: the same figure the run's report gives.
            seconds: last_finish(&self.finished, self.started).as_secs_f64(),
        })
    }

    fn expect(&mut self, bytes: u64, objects: u64) -> wasmtime::Result<()> {
        // Only for the progress line; a verify pass reads, it has no bar to size.
        if self.ctx.mode == Mode::Write {
            self.ctx.events.emit(Event::Expect { bytes, objects });
        }
        Ok(())
    }

    fn report_panic(&mut self, message: String) -> wasmtime::Result<()> {
        self.panic_message.get_or_insert(sanitize(&message, MAX_LOG_LINE));
        Ok(())
    }

    fn read(&mut self, name: String, offset: u64, len: Option<u64>, check: wit::ReadCheck) -> HostResult<()> {
        self.read_inner(name, offset, len, read_check(check))
    }

    fn wait_reads(&mut self) -> HostResult<Vec<wit::ReadStats>> {
        self.wait_reads_inner()
    }

    fn stat(&mut self, name: String) -> HostResult<Option<u64>> {
        self.stat_inner(name)
    }

    fn list(&mut self, prefix: String) -> HostResult<wit::Listing> {
        self.list_inner(prefix)
    }

    fn delete(&mut self, name: String) -> HostResult<()> {
        self.delete_inner(name)
    }

    fn phase(&mut self, name: String) -> wasmtime::Result<()> {
        self.phase_inner(name)
    }

    fn pause(&mut self, seconds: f64) -> wasmtime::Result<()> {
        self.pause_inner(seconds)
    }

    fn barrier(&mut self) -> wasmtime::Result<()> {
        self.barrier_inner()
    }

    fn world_totals(&mut self, phase: bool) -> wasmtime::Result<wit::RunTotals> {
        self.end_stretch_first()?;
        let own = if phase { self.phase_totals()? } else { self.totals()? };
        let waited = Instant::now();
        let r = self.ctx.world.sum_max(own.bytes, own.objects, own.seconds, &self.ctx.cancel);
        self.blocked += waited.elapsed();
        match r {
            Ok((bytes, objects, seconds)) => {
                self.next_stretch();
                Ok(wit::RunTotals { bytes, objects, seconds })
            }
            Err(_) => Err(self.interrupted_trap()),
        }
    }

    fn facts(&mut self) -> wasmtime::Result<wit::NodeFacts> {
        let f = &self.ctx.facts;
        Ok(wit::NodeFacts {
            node_memory: f.node_memory,
            node_ranks: f.node_ranks,
            page_cache: f.page_cache,
            cache_drop: f.cache_drop,
            cached_fraction: self.phases.last().and_then(|p| p.cached_fraction()),
            results_elsewhere: f.results_elsewhere,
        })
    }

    fn stonewalled(&mut self) -> wasmtime::Result<u64> {
        // Reads taken in so far: the plugin's own wait-reads decides when that is.
        Ok(self.cut + self.phases.iter().map(|p| p.counts.cut_reads).sum::<u64>())
    }

    fn phase_totals(&mut self) -> wasmtime::Result<wit::RunTotals> {
        let p = self.phases.last().expect("a phase");
        Ok(wit::RunTotals { bytes: p.bytes(), objects: p.ops(), seconds: p.seconds() })
    }
}

pub(super) fn read_check(c: wit::ReadCheck) -> crate::pipeline::read::Check {
    match c {
        wit::ReadCheck::None => crate::pipeline::read::Check::None,
        wit::ReadCheck::Crc => crate::pipeline::read::Check::Crc,
        wit::ReadCheck::Verify => crate::pipeline::read::Check::Verify,
    }
}

impl crate::plugin::dgen::plugin::types::Host for HostState {}
