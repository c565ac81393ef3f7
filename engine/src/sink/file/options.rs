//! What a `file://` target is and how it is written: the engine, O_DIRECT, queue depth, what
//! becomes of the page cache around reads and writes; the `[target.file]` keys that set them.

use super::*;
use crate::error::{Error, Result};
use crate::keys::Keys;
use std::path::PathBuf;

/// How file writes are issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileEngine {
    /// io_uring where the kernel allows it, else pwrite.
    Auto,
    Pwrite,
    IoUring,
}

impl std::str::FromStr for FileEngine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(FileEngine::Auto),
            "pwrite" => Ok(FileEngine::Pwrite),
            "io_uring" | "uring" => Ok(FileEngine::IoUring),
            other => Err(format!("unknown engine '{other}' (use io_uring, pwrite or auto)")),
        }
    }
}

/// What happens to a file's cached pages before it is read (buffered I/O only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// fsync, then evict its pages (`posix_fadvise(DONTNEED)`, as fio's `invalidate=1`): the read
    /// comes from the device, without root.
    Drop,
    /// Leave the page cache as it is (a warm read, or what the application would see).
    Keep,
}

impl std::str::FromStr for CacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(CacheMode::Drop),
            "keep" => Ok(CacheMode::Keep),
            other => Err(format!("unknown cache mode '{other}' (use drop or keep)")),
        }
    }
}

/// The kernel's readahead for a file read with buffered I/O, as an application asks for it
/// (`posix_fadvise`, as fio's `fadvise_hint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readahead {
    /// The kernel's default window (no advice).
    Normal,
    /// `POSIX_FADV_SEQUENTIAL`: a larger window (twice the device's, on Linux).
    Sequential,
    /// `POSIX_FADV_RANDOM`: no readahead — each read fetches what it asks for, as random reads of
    /// a database or of tensors scattered over a file would.
    Off,
}

impl std::str::FromStr for Readahead {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "normal" | "auto" => Ok(Readahead::Normal),
            "sequential" => Ok(Readahead::Sequential),
            "off" | "random" => Ok(Readahead::Off),
            other => Err(format!("unknown readahead '{other}' (use normal, sequential or off)")),
        }
    }
}

/// Whether buffered writes leave their pages in the page cache (`target.file.uncached`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uncached {
    /// Plain buffered writes: the pages stay cached once written back, as an application's would.
    Off,
    /// `RWF_DONTCACHE` (Linux 6.14+, ext4, XFS, btrfs…): each write starts its own writeback and its
    /// pages are dropped once on disk, so a long write streams through a small, recycled part of the
    /// page cache instead of filling it (fio's `uncached=1`). Refused where the kernel lacks it.
    On,
    /// `On` where the kernel and file system support it, else `Off` (the report says which).
    Auto,
}

impl std::str::FromStr for Uncached {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "false" | "off" => Ok(Uncached::Off),
            "true" | "on" => Ok(Uncached::On),
            "auto" => Ok(Uncached::Auto),
            other => Err(format!("unknown value '{other}' (use true, false or \"auto\")")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct FileOptions {
    pub engine: FileEngine,
    /// Open with O_DIRECT (bypass the page cache).
    pub direct: bool,
    /// Writes in flight (io_uring queue depth, or pwrite worker threads).
    pub queue_depth: usize,
    /// Create the root directory if it is missing (workload targets); `gen -o` wants it to exist.
    pub create_root: bool,
    /// Before a file is read: drop its cached pages, or keep them.
    pub cache: CacheMode,
    /// How the kernel reads ahead of buffered reads.
    pub readahead: Readahead,
    /// Buffered writes without leaving their pages cached.
    pub uncached: Uncached,
    /// Replace an existing file of the name even if the engine did not write it: for an output
    /// the user names (`gen -o`, Python's `write_file`), never for a plugin's objects.
    pub replace_any: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            engine: FileEngine::Auto,
            direct: false,
            queue_depth: 8,
            create_root: false,
            cache: CacheMode::Drop,
            readahead: Readahead::Normal,
            uncached: Uncached::Off,
            replace_any: false,
        }
    }
}

/// The keys a workload's `[target.file]` (or `[target]`, for a `file://` URI) takes.
pub const KEYS: &[&str] = &["engine", "direct", "queue_depth", "cache", "readahead", "uncached"];

/// A `file://DIR` target: the directory and how to write below it.
#[derive(Clone, Debug)]
pub struct FileTarget {
    pub root: PathBuf,
    pub options: FileOptions,
}

impl FileTarget {
    /// A workload's file settings; the root is created when missing.
    pub fn options(keys: &mut Keys) -> Result<FileOptions> {
        let d = FileOptions::default();
        Ok(FileOptions {
            engine: keys.parsed("engine")?.unwrap_or(d.engine),
            direct: keys.flag("direct")?.unwrap_or(d.direct),
            queue_depth: keys.integer("queue_depth", 1..=1024)?.map_or(d.queue_depth, |n| n as usize),
            create_root: true,
            cache: keys.parsed("cache")?.unwrap_or(d.cache),
            readahead: keys.parsed("readahead")?.unwrap_or(d.readahead),
            uncached: keys.parsed("uncached")?.unwrap_or(d.uncached),
            replace_any: false,
        })
    }

    /// Parses `file://DIR` (a relative DIR is relative to the working directory).
    pub fn new(uri: &str, options: FileOptions) -> Result<FileTarget> {
        let bad = |why: &str| Error::InvalidValue { key: "target.uri", value: uri.into(), reason: why.into() };
        let path = uri.strip_prefix("file://").ok_or_else(|| bad("is not a file:// URI"))?;
        if path.is_empty() {
            return Err(bad("needs a directory (file://DIR)"));
        }
        Ok(FileTarget { root: PathBuf::from(path), options })
    }

    pub fn open(&self) -> Result<FileSink> {
        FileSink::new(&self.root, self.options.clone())
    }
}
