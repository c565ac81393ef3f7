//! dgen-engine: synthetic data at hardware speed, with exact and independent deduplication and
//! compression ratios.
//!
//! A tour of the modules:
//! - [`gen`] — the data model. A [`gen::Generator`] turns (seed, [`gen::Profile`], stream, offset) into
//!   bytes: random access, parallel, and the same on every machine. [`gen::dedup`] places duplicate
//!   blocks; [`gen::aes`] is the pseudo-random core (VAES / AES-NI / portable kernels, identical output).
//! - [`output`] — streaming a generated stream into any writer, generation overlapped with I/O.
//! - [`size`] — sizes as people write them (`4KiB`, `1.5 GiB`, `10GB`).
//! - [`error`] — the library's error type; every variant names the key or path it concerns.
//!
//! The binary (`engine/src/main.rs`) only parses the command line, calls into here and maps errors to
//! exit codes.

pub mod error;
pub mod gen;
pub mod output;
pub mod size;

pub use error::{Error, Result};
pub use gen::{Generator, Profile};
