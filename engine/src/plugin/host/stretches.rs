//! Phases and stretches. A phase names a part of the run (`save`, `restore`) whose figures are kept
//! apart; a stretch runs between two points where all ranks meet (a phase start, a `barrier`,
//! `world-totals`). Under stonewalling the first rank done with a stretch ends it for the others.
//! Pauses are here too: time the plugin asks to wait, not held against its deadline.

use super::HostState;
use crate::pipeline::phase::{Phase, MAX_PHASE_NAME};
use crate::untrusted::sanitize;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The most phases a run may have.
pub const MAX_PHASES: usize = 10_000;
/// The longest pause, seconds.
pub const MAX_PAUSE: f64 = 86_400.0;

/// What a phase's records cost: its histograms' counters and the rest.
pub(super) fn phase_cost() -> usize {
    let p = Phase::new(String::new(), Instant::now());
    (p.latency.distinct_values() + p.ttfb.distinct_values()) * 8 + 512
}

impl HostState {
    pub(super) fn phase_inner(&mut self, name: String) -> wasmtime::Result<()> {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(self.violate("a phase name must be non-empty, without control characters".into()));
        }
        if self.phases.len() >= MAX_PHASES {
            return Err(self.violate(format!("started more than {MAX_PHASES} phases")));
        }
        self.charge(self.phase_cost + name.len(), "starting a phase")?;
        // Every rank starts the phase together, so their timings are comparable. The wait is not
        // the plugin's time; a peer's failure (or Ctrl-C) during it stops this rank too.
        self.barrier_inner()?;
        let now = Instant::now();
        let split = self.ctx.split.snapshot();
        if let Some(p) = self.phases.last_mut() {
            p.end(now, split);
        }
        // The implicit first phase disappears when nothing happened in it.
        if self.phases.len() == 1 && self.phases[0].ops() == 0 && self.reads_issued == 0 && self.committed == 0 {
            self.phases.clear();
        }
        let told = sanitize(&name, 64);
        self.phases.push(Phase::new(name, now).with_split(split));
        self.ctx.events.emit(crate::events::Event::Phase { name: told });
        if let Some(r) = &self.reads {
            r.new_phase();
        }
        Ok(())
    }

    pub(super) fn pause_inner(&mut self, seconds: f64) -> wasmtime::Result<()> {
        if !(0.0..=MAX_PAUSE).contains(&seconds) {
            return Err(self.violate(format!("pause of {seconds} seconds: it must be from 0 to {MAX_PAUSE}")));
        }
        let t = Instant::now();
        let until = t + Duration::from_secs_f64(seconds);
        while Instant::now() < until {
            if self.ctx.cancel.load(Ordering::Relaxed) {
                self.blocked += t.elapsed();
                return Err(self.interrupted_trap());
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        self.blocked += t.elapsed();
        Ok(())
    }

    /// Waits for every rank at a barrier; the wait is not the plugin's time.
    /// Stonewalling counts a run in stretches between the points where all ranks meet (a phase
    /// start, a `barrier`, `world-totals`: every rank passes the same ones in the same order). A
    /// rank that reaches one is done with its stretch once its writes and reads have ended (waited
    /// for here); the first rank done tells the others, which ends the stretch for them.
    pub(super) fn end_stretch_first(&mut self) -> wasmtime::Result<()> {
        if !self.ctx.stonewall {
            return Ok(());
        }
        let t = Instant::now();
        self.wait_until(HostState::writes_ended);
        while self.reads_received < self.reads_issued && !self.cancelled() {
            if let Ok(r) = self.read_rx.recv_timeout(Duration::from_millis(50)) {
                self.receive_read(r)?;
            }
        }
        self.blocked += t.elapsed();
        if self.cancelled() {
            return Err(self.interrupted_trap());
        }
        self.stretch_done();
        Ok(())
    }

    /// This rank's writes and reads of its current stretch are over: record whether another rank's
    /// finish ended it, or be the one that ends it for the others.
    pub(super) fn stretch_done(&mut self) {
        if !self.ctx.stonewall {
            return;
        }
        let wall = self.ctx.world.wall().clone();
        // A rank with nothing to do in a stretch does not end it for the others.
        let idle = (self.committed, self.reads_issued) == self.stretch_mark;
        match wall.raised(self.stretch_seq) {
            Some((at, by)) => {
                if let Some(p) = self.phases.last_mut() {
                    p.stonewalled = Some((at.saturating_duration_since(p.started).as_secs_f64(), by));
                }
            }
            None if !idle => self.ctx.world.stonewall(self.stretch_seq),
            None => {}
        }
    }

    pub(super) fn barrier_inner(&mut self) -> wasmtime::Result<()> {
        self.end_stretch_first()?;
        let waited = Instant::now();
        let r = self.ctx.world.barrier(&self.ctx.cancel);
        self.blocked += waited.elapsed();
        r.map_err(|_| self.interrupted_trap())?;
        self.next_stretch();
        Ok(())
    }

    /// Every rank has passed the same meeting point: a new stretch begins.
    pub(super) fn next_stretch(&mut self) {
        self.stretch_seq += 1;
        self.stretch_mark = (self.committed, self.reads_issued);
        self.ctx.world.wall().enter(self.stretch_seq);
    }

    /// The phases, their last one ended now.
    pub(super) fn close_phases(&mut self) {
        let (now, split) = (Instant::now(), self.ctx.split.snapshot());
        if let Some(p) = self.phases.last_mut() {
            p.end(now, split);
        }
    }
}

/// Checks a phase name's length in the plugin's memory before it is copied.
pub(super) const PHASE_NAME_MAX: usize = MAX_PHASE_NAME;
