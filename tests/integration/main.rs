//! The integration tests: one binary, a module per area.

mod azure;
mod cli;
mod common;
mod determinism;
mod devices;
mod docs;
mod errors;
mod fidelity;
mod first_hour;
mod foreign;
mod hardening;
mod mlperf;
#[cfg(feature = "mpi")]
mod mpi;
mod objects;
mod operations;
mod plugins;
mod ranks;
mod reads;
mod realism;
mod reporter;
mod s3;
mod sinks;
mod targets;
mod writes;
