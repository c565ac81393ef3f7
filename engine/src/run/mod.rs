//! The ways the engine is run, each one entry point the binary, the Python package and embedding
//! programs share: a workload ([`session`]: plan, plugin, sink and executor wired together; ranks
//! [`in_turn`] in one process; the [`merge`] of many ranks' figures), one generated stream
//! ([`generate`], the `gen` command), and one generated object to any target ([`write_file`]).
//! [`workload`] turns a workload file into a checked plan.

pub mod generate;
pub mod in_turn;
pub mod merge;
pub mod session;
pub mod workload;
pub mod write_file;
