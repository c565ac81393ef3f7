//! What becomes of committed objects: the executor's finished-object reports taken in (each counted
//! in the phase it was committed in), the waits for them (`wait-all`, a durable write before a
//! read-back), and the run's throughput time.

use super::{HostResult, HostState, Named};
use crate::pipeline::executor::ObjectResult;
use crate::untrusted::sanitize;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl HostState {
    /// Ends the run's intake: no more jobs will come.
    pub(super) fn close_jobs(&mut self) {
        self.ctx.jobs.take();
    }

    /// Takes the reports of objects that finished after the plugin's last wait (once the executor is
    /// done), so the run's list is whole.
    pub(super) fn collect_finished(&mut self) {
        while let Ok(r) = self.ctx.done.try_recv() {
            if !self.attribute(&r) {
                self.finished.push(r);
            }
        }
    }

    /// Every object committed so far has ended, whole or cut by a stonewall.
    pub(super) fn writes_ended(&self) -> bool {
        self.finished.len() + self.cut as usize >= self.committed as usize
    }

    /// Receives finished-object reports until `pred` holds or the executor stops.
    pub(super) fn wait_until(&mut self, mut pred: impl FnMut(&Self) -> bool) {
        while !pred(self) && !self.writes_stopped {
            match self.ctx.done.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => {
                    if !self.attribute(&r) {
                        self.finished.push(r.clone());
                        self.unreported.push(r);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if self.ctx.cancel.load(Ordering::Relaxed) {
                        self.writes_stopped = true;
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => self.writes_stopped = true,
            }
        }
    }

    /// Waits until the write of `name`, committed in this run, is durable; an error for the plugin
    /// when the run's writes stopped first. Time waiting is not held against the deadline.
    pub(super) fn wait_durable(&mut self, name: &str) -> HostResult<()> {
        let durable = |s: &Self| matches!(s.names.get(name), Some(Named::Committed { durable: true, .. }));
        let settled = |s: &Self| {
            matches!(
                s.names.get(name),
                Some(Named::Committed { durable: true, .. } | Named::Committed { cut: true, .. })
            )
        };
        let t = Instant::now();
        self.wait_until(settled);
        self.blocked += t.elapsed();
        if self.ctx.cancel.load(Ordering::Relaxed) {
            return Err(self.interrupted_trap());
        }
        if matches!(self.names.get(name), Some(Named::Committed { cut: true, .. })) {
            return Ok(Err(format!(
                "'{}' was not written whole: the stonewall ended its phase (another rank finished first)",
                sanitize(name, 200)
            )));
        }
        if !durable(self) {
            return Ok(Err(format!("'{}' was not written (the run's writes have stopped)", sanitize(name, 200))));
        }
        Ok(Ok(()))
    }
}

/// Time from `started` to the last of `objects` finished (to now while none has): the one definition
/// of a run's throughput time, for the report and for the plugin's `totals`.
pub fn last_finish(objects: &[ObjectResult], started: Instant) -> Duration {
    objects.iter().map(|r| r.at).max().map_or_else(|| started.elapsed(), |t| t.saturating_duration_since(started))
}
