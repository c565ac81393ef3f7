//! Where the bytes go. A [`Sink`] is one storage target (a directory of files, a bucket or a
//! container); it makes [`ObjectWriter`]s, each of which takes buffer-sized writes at offsets and reports
//! their completion asynchronously, then either finishes (the object becomes durable and visible) or
//! aborts (nothing that looks complete is left).
//!
//! Each sink declares its [`Capabilities`] — alignment, the smallest and preferred write, the largest
//! object and name component — the way an fio ioengine does, so the executor and the plugin host size
//! buffers and refuse what the target cannot take instead of guessing.
//! Backends: [`null`] (discards: measures the engine itself), [`file`] (pwrite worker threads or an
//! io_uring ring, optionally O_DIRECT), [`s3`] (multipart uploads), [`azure`] (block blobs); what
//! object stores share — parts, concurrency, abort — is in [`cloud`].

pub mod azure;
pub mod cloud;
pub mod dev;
pub mod device;
pub mod file;
pub mod interrupt;
pub mod null;
pub mod ordered;
pub mod s3;
pub mod stream;
pub mod target;

use crate::error::{Error, Result};
use crate::object::identity::Identity;
use crate::pool::{Buffer, BufferPool};

pub use file::{CacheMode, FileEngine, FileOptions, FileSink};
pub use null::NullSink;
pub use target::Target;

/// What a sink can do; the executor adapts to it.
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// Short engine name for reports (`null`, `pwrite`, `io_uring`).
    pub engine: &'static str,
    /// Required alignment of buffer addresses, write offsets and lengths (1: none).
    pub alignment: usize,
    /// Every write of an object but its last must be at least this long (S3 parts: 5 MiB).
    pub min_write: u64,
    /// The write size the sink asks for, overriding the run's buffer size (an explicit S3 part size).
    pub preferred_write: Option<u64>,
    /// The largest object the target takes (a file system's file size limit, S3's and Azure's object
    /// limits): a larger one is refused before anything is created.
    pub max_object: u64,
    /// The longest `/`-separated component of a name (a file system's NAME_MAX); names as a whole
    /// are at most [`MAX_NAME`] bytes on every sink.
    pub max_component: usize,
}

impl Capabilities {
    /// A sink that takes any write at any offset, of any size, with any name the name rules allow:
    /// the null sink, a byte stream.
    pub fn unconstrained(engine: &'static str) -> Capabilities {
        Capabilities {
            engine,
            alignment: 1,
            min_write: 0,
            preferred_write: None,
            max_object: u64::MAX,
            max_component: MAX_NAME,
        }
    }
}

/// The longest object name, bytes, on every sink (S3's and Azure's key limit).
pub const MAX_NAME: usize = 1024;

/// Called once when a write completes, from whatever thread the sink completes on. The sink owns the
/// write's buffer and drops it (back to the pool) before calling this — an object store may have lent
/// it, without a copy, to an HTTP body.
pub type Done = Box<dyn FnOnce(Result<()>) + Send>;

/// One write: bytes `buf[..len]` at `offset` of the object.
pub struct WriteReq {
    pub offset: u64,
    pub len: usize,
    pub buf: Buffer,
    pub done: Done,
}

/// A storage target.
pub trait Sink: Send + Sync {
    fn capabilities(&self) -> Capabilities;

    /// Where this sink writes, for messages (`file:/data/out`).
    fn describe(&self) -> String;

    /// Starts object `name` (a relative path below the target root). `size` is its final size when
    /// known; `identity` is stamped on it where the store keeps one (see [`crate::identity`]). An
    /// existing object of that name is replaced only if it carries an identity (the engine wrote
    /// it): anything else under the name is refused when the object is finished.
    fn create(&self, name: &str, size: Option<u64>, identity: &Identity) -> Result<Box<dyn ObjectWriter + '_>>;

    /// Opens a finished object for reading (`verify`, a plugin's reads). A missing object is
    /// [`Error::NotFound`] naming it; so is anything that is not an object (a directory, a symlink,
    /// a FIFO).
    fn open(&self, name: &str) -> Result<Box<dyn ObjectReader>>;

    /// The size and identity of object `name`, or `None` when there is no such object.
    fn stat(&self, name: &str) -> Result<Option<ObjectInfo>> {
        Err(Error::sink(self.describe(), format!("cannot look up '{name}': this target is write-only")))
    }

    /// Removes object `name` if this engine wrote it (it carries an identity); a missing one, or
    /// one the engine did not write, is [`Error::NotFound`] and stays.
    fn delete(&self, name: &str) -> Result<()> {
        Err(Error::sink(self.describe(), format!("cannot delete '{name}': this target is write-only")))
    }

    /// The objects this engine wrote (they carry an identity) whose names start with `prefix`
    /// (plain string prefix, as object stores list): how many and their total size. Temporaries of
    /// unfinished writes are not objects. `stop` is asked between batches: when it says so, the
    /// listing ends with [`Error::Cancelled`].
    fn list(&self, prefix: &str, stop: &(dyn Fn() -> bool + Sync)) -> Result<Listing> {
        let _ = stop;
        Err(Error::sink(self.describe(), format!("cannot list '{prefix}': this target is write-only")))
    }

    /// Opens object `name` for operations in place (random reads and writes, the operations
    /// engine), making it, or extending it to `req.end` bytes, when `req.create` says so. An object
    /// the engine did not write (no identity) is never opened: it is refused as in the way.
    fn open_region(&self, name: &str, req: &RegionRequest) -> Result<OpenRegion> {
        let _ = req;
        Err(Error::sink(
            self.describe(),
            format!("cannot work in place on '{name}': this target takes whole objects only"),
        ))
    }

    /// Stamps the identity of a region on it (once its contents are what the identity says).
    fn stamp_region(&self, region: &OpenRegion, identity: &Identity) -> Result<()> {
        let _ = (region, identity);
        Ok(())
    }

    /// Whether what is written here can be read back (the null sink keeps nothing).
    fn keeps_data(&self) -> bool {
        true
    }

    /// Whether objects here carry identities (a file system without user xattrs does not).
    fn keeps_identity(&self) -> bool {
        false
    }

    /// Hands the sink the pool its writes will come from (io_uring registers it). Optional.
    fn use_pool(&self, _pool: &BufferPool) {}

    /// What the sink has to tell at the end of a run: warnings (an upload it could not abort) and
    /// figures (the concurrency it settled on).
    fn notes(&self) -> Vec<crate::events::Note> {
        Vec::new()
    }
}

/// An object being written.
pub trait ObjectWriter: Send {
    /// Queues a write; returns at once. Failures are reported through `req.done`.
    fn submit(&mut self, req: WriteReq);

    /// All submitted writes completed without error and the object is `size` bytes long: make it durable
    /// and visible under its name.
    fn finish(self: Box<Self>, size: u64) -> Result<()>;

    /// Throws away what was written: no object that looks complete may remain. Writes still held by
    /// the writer complete (with an error) and give their buffers back.
    fn abort(self: Box<Self>);

    /// When the writer gathers consecutive writes into parts of this many bytes before sending them
    /// (object stores), the executor fills one whole part at a time. `None`: every write stands alone.
    fn part_size(&self) -> Option<u64> {
        None
    }
}

/// What a job asks of its region's object.
#[derive(Clone, Copy, Debug)]
pub struct RegionRequest {
    /// The object must be at least this long (the region's end); 0: as it is (a device).
    pub end: u64,
    /// Make it, or extend it, when missing or short.
    pub create: bool,
    /// O_DIRECT, or the target's setting.
    pub direct: Option<bool>,
}

/// An object open for operations in place.
pub struct OpenRegion {
    pub file: std::fs::File,
    /// For messages.
    pub path: String,
    /// Its size now (after any extension).
    pub len: u64,
    /// The identity it carried when opened.
    pub identity: Option<Identity>,
    pub direct: bool,
    /// What O_DIRECT needs of offsets and lengths (1 without it).
    pub align: u64,
}

/// What `stat` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// The identity stamped on it, when it carries one (the engine wrote it).
    pub identity: Option<Identity>,
}

/// What `list` found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub count: u64,
    pub bytes: u64,
}

/// A finished object, open for reading. Shared by the threads that read its ranges in parallel.
pub trait ObjectReader: Send + Sync {
    fn size(&self) -> u64;
    /// Reads up to `buf.len()` bytes at `offset`; 0 only at the end. Where the sink needs aligned
    /// reads (O_DIRECT), `offset` and `buf`'s address and length follow [`Capabilities::alignment`]
    /// (the end of the object excepted).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize>;
    /// The share of the object held in a local cache when it was opened (files: the page cache),
    /// where the sink can tell.
    fn cached_fraction(&self) -> Option<f64> {
        None
    }
    /// The identity stamped on it, when it carries one.
    fn identity(&self) -> Option<Identity> {
        None
    }
}

/// Rejects object names that could leave the target root (absolute paths, `..`, empty components),
/// that the target cannot hold (longer than [`MAX_NAME`] or with a component over
/// `caps.max_component`), or that would reach a terminal as control characters.
pub fn check_name(name: &str, caps: &Capabilities) -> Result<()> {
    let bad = |why: String| {
        Err(Error::InvalidValue { key: "object name", value: crate::untrusted::sanitize(name, 200), reason: why })
    };
    if name.is_empty() {
        return bad("is empty".into());
    }
    if name.len() > MAX_NAME {
        return bad(format!("is {} bytes long, more than the {MAX_NAME} allowed", name.len()));
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return bad("must be relative to the target root".into());
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character".into());
    }
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return bad("must not contain empty, '.' or '..' components".into());
        }
        if part.len() > caps.max_component {
            return bad(format!(
                "has a component of {} bytes, more than the {} the target allows",
                part.len(),
                caps.max_component
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_below_the_root() {
        let caps = Capabilities { max_component: 255, ..NullSink.capabilities() };
        let long = "x".repeat(300);
        let c250 = "y".repeat(250);
        for ok in ["a", "a/b.bin", "step-1/rank_0.safetensors", "..x", "x..", c250.as_str()] {
            assert!(check_name(ok, &caps).is_ok(), "{ok}");
        }
        let too_long = "a/".repeat(600);
        for bad in
            ["", "/etc/passwd", "../x", "a/../../b", "a//b", "./a", "a/", "a\0b", "a\x1b[2Jb", "a\nb", &long, &too_long]
        {
            assert!(check_name(bad, &caps).is_err(), "{bad}");
        }
    }
}
