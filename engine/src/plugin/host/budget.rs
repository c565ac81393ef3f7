//! The plugin's memory account: its linear memory, its tables and everything the host holds on its
//! behalf, against one limit (`[limits] memory`). Wasmtime asks the [`Budget`] before the plugin's
//! memory or tables grow; the host charges it before it keeps anything for the plugin, so a call that
//! would pass the limit traps before anything is allocated.

use super::{HostState, HostTrap};
use crate::size::format_size;

/// What the host charges, beyond the bytes themselves, for the records it keeps (measured with
/// generous rounding: map entries, `Vec` growth, allocator overhead).
pub(super) mod cost {
    /// An open target: its table entry, its state, its entry in the run's name map.
    pub const TARGET: usize = 512;
    /// One segment of a layout, with `Vec` doubling.
    pub const SEGMENT: usize = 96;
    /// A committed object's records: name map entry, recipe, executor job, finished record.
    pub const OBJECT: usize = 768;
    /// Copies of an object's name the host keeps (map key, job, finished record, report).
    pub const NAME_COPIES: usize = 4;
    /// A metric record.
    pub const METRIC: usize = 64;
    /// A verify-mode verdict.
    pub const VERDICT: usize = 256;
    /// An object the reader threads keep open (its handle, path and map entry, its name aside).
    pub const OPEN_READER: usize = 1024;
    /// A failed read's record in the user's report.
    pub const READ_FAILURE: usize = 256;
    /// The allocator's share of one small allocation (an `Arc` of plugin bytes).
    pub const ALLOCATION: usize = 32;
    /// A reserved region's or a field's entry, with `Vec` doubling.
    pub const ENTRY: usize = 32;
}

/// The plugin's memory account: its linear memory, its tables, and what the host holds for it, all
/// against one limit (`[limits] memory`). Wasmtime asks it before any memory or table grows.
pub struct Budget {
    pub(super) limit: usize,
    pub(super) guest: usize,
    pub(super) tables: usize,
    pub(super) host: usize,
    pub(super) last_grow: usize,
    /// Of `host`, what earlier ranks in turn left (said in the message).
    pub(super) carried: usize,
    /// Why the last growth was refused, for the error message.
    pub(crate) refused: Option<String>,
}

impl Budget {
    pub(super) fn new(limit: usize) -> Budget {
        Budget { limit, guest: 0, tables: 0, host: 0, last_grow: 0, carried: 0, refused: None }
    }

    fn used(&self) -> usize {
        self.guest + self.tables + self.host
    }

    fn breach(&self, adding: usize, what: &str) -> String {
        let carried = match self.carried {
            0 => String::new(),
            n => format!(" (of which {} for the ranks run before this one)", format_size(n as u64)),
        };
        format!(
            "exceeded its memory limit of {} ([limits] memory) {what}: its linear memory {}, tables {}, held by \
             the host for it {}{carried}, {} more asked",
            format_size(self.limit as u64),
            format_size(self.guest as u64),
            format_size(self.tables as u64),
            format_size(self.host as u64),
            format_size(adding as u64),
        )
    }

    /// Refuses (and remembers why) a growth of linear memory or a table past the limit.
    fn admit_growth(&mut self, extra: usize, what: &str) -> wasmtime::Result<()> {
        if self.used().saturating_add(extra) > self.limit {
            let m = self.breach(extra, what);
            self.refused = Some(m.clone());
            return Err(wasmtime::Error::new(HostTrap::Memory(m)));
        }
        Ok(())
    }

    /// Bytes the host is holding on the plugin's behalf.
    pub fn host_bytes(&self) -> usize {
        self.host
    }
}

impl wasmtime::ResourceLimiter for Budget {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let extra = desired.saturating_sub(current);
        self.admit_growth(extra, "growing its memory")?;
        self.guest += extra;
        self.last_grow = extra;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.guest -= std::mem::take(&mut self.last_grow);
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        // Wasmtime keeps a pointer per element; count two for its bookkeeping.
        let extra = desired.saturating_sub(current).saturating_mul(2 * std::mem::size_of::<usize>());
        self.admit_growth(extra, "growing a table")?;
        self.tables += extra;
        Ok(true)
    }

    fn instances(&self) -> usize {
        4
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        2
    }
}

impl HostState {
    /// Starts the plugin's account with `bytes` already held for it in this process (what earlier
    /// ranks run in turn keep for the merged report). A plugin that leaves more than its limit
    /// across ranks is stopped like one that holds it at once.
    pub fn carry(&mut self, bytes: usize) {
        self.budget.host += bytes;
        self.budget.carried = bytes;
    }

    /// Traps naming the limit unless `bytes` more fit in the budget.
    pub(super) fn fits(&mut self, bytes: usize, what: &str) -> wasmtime::Result<()> {
        if self.budget.used().saturating_add(bytes) > self.budget.limit {
            let m = self.budget.breach(bytes, what);
            return Err(self.violate(m));
        }
        Ok(())
    }

    /// Charges `bytes` held for the plugin, or traps naming the limit.
    pub(super) fn charge(&mut self, bytes: usize, what: &str) -> wasmtime::Result<()> {
        self.fits(bytes, what)?;
        self.budget.host += bytes;
        Ok(())
    }

    pub(super) fn release(&mut self, bytes: usize) {
        self.budget.host = self.budget.host.saturating_sub(bytes);
    }
}
