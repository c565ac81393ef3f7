//! The ways the engine is run, each one entry point the binary, the Python package and embedding
//! programs share: a workload ([`session`]: plan, plugin, sink and executor wired together; ranks
//! [`in_turn`] in one process; the [`merge`] of many ranks' figures on rank 0), one generated stream
//! ([`generate`], the `gen` command), and one generated object to any target ([`write_file`]).
//! [`workload`] turns a workload file into a checked plan; [`place`] guards a file target's root
//! and tells the plugin the node's facts.

pub mod gen_job;
pub mod generate;
pub mod in_turn;
pub mod merge;
pub mod params;
mod place;
pub mod session;
pub mod workload;
pub mod write_file;

pub use session::{Outcome, RunEnv, Session};

/// A seed drawn at random (a run without one), from the clock and the process's hasher keys.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}
