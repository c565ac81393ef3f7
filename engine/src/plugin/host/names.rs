//! The names a run uses: each is written once, and what the host knows of it — open, committed
//! (with its recipe, phase, and whether its write is durable), or declared (on storage already, read
//! only where its stored identity is the declared one).

use crate::object::Recipe;
use crate::untrusted::sanitize;
use std::sync::Arc;

/// A name used in this run.
pub(super) enum Named {
    Open,
    Committed {
        seq: u64,
        recipe: Arc<Recipe>,
        /// What the plugin was told by its first `verify` of it: a second one does not read again.
        verified: Option<Result<u64, String>>,
        /// The phase it was committed in.
        phase: usize,
        /// Its write has finished (it is durable), with its CRC32C when one was taken.
        durable: bool,
        crc32c: Option<u32>,
        /// The stonewall ended its phase before it was whole: it was removed.
        cut: bool,
        /// Under `dgen-engine verify` (nothing is written: it must be on storage as described), its
        /// identity, worked out once; none when this run writes it.
        identity: Option<crate::object::identity::Identity>,
    },
    /// Described but not written: on storage already (an earlier run's), for reads to check. It
    /// is read only where the stored identity is this one.
    Declared {
        recipe: Arc<Recipe>,
        identity: crate::object::identity::Identity,
    },
}

/// What the plugin is told of an object that is not there, or that it may not see: the same words
/// for both, so it cannot tell them apart.
pub(crate) fn no_such(name: &str) -> String {
    format!("'{}': no such object", sanitize(name, 200))
}
