//! Local files: a directory is the target root, object names are paths below it.
//!
//! An object is written to a hidden temporary name beside its final one
//! (`.NAME.dgen-tmp.HOST.PID.N`, NAME cut so the whole fits in the file system's name limit), then
//! fsynced, renamed and its directory fsynced: a file under the final name is always complete. Abort,
//! an error, or a crash leaves at most the temporary, never a short file under the real name; the
//! next run on the same root removes temporaries of processes of this host that are gone (a
//! `kill -9`, a crash) and says so.
//!
//! Before a buffered read, a file's pages are dropped (`cache = "drop"`: fsync, then
//! `posix_fadvise(DONTNEED)`) or kept (`"keep"`), and `mincore` tells how much of it the page cache
//! still holds, so a report can say whether a read phase measured the device or memory.
//!
//! Every path below the root is reached without following a symlink, and only directories and
//! regular files are ever opened (see `beneath`). Each object carries its identity in the
//! `user.dgen.id` extended attribute ([`crate::identity`]); a file without one — the engine did not
//! write it — is never replaced, deleted, listed or read for a plugin.
//!
//! Two engines: `pwrite` (a pool of worker threads, one synchronous `pwrite` each, queue depth =
//! threads) and `io_uring` (one ring, see `uring`); both carry a `job::Job` per write. Reads follow
//! the engine: `pread` on the caller's thread, or a read through the ring. With
//! O_DIRECT, buffers, offsets and lengths follow the file system's direct-I/O alignment (from `statx`); an object whose size is not a
//! multiple of it gets its last write padded up to the alignment and the file truncated back to the
//! real size before the rename, so every write stays O_DIRECT.

mod beneath;
mod job;
mod object;
mod options;
mod probe;
mod pwrite;
mod reader;
mod region;
mod release;
mod temporaries;
mod uring;

pub use release::{close_in_background, close_late};

use super::{Capabilities, Listing, ObjectInfo, ObjectReader, ObjectWriter, OpenRegion, RegionRequest, Sink};
use crate::error::{Error, Failure, Result};
use crate::object::identity::Identity;
use crate::pool::BufferPool;
use beneath::{Kind, Root};
use job::Job;
use std::fs::{self};
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use uring::Ring;

use object::FileObject;
pub use options::*;
use probe::*;
use pwrite::*;
use reader::*;
use temporaries::*;

/// `RWF_DONTCACHE` (include/uapi/linux/fs.h, Linux 6.14); the libc crate does not name it yet.
pub(super) const RWF_DONTCACHE: i32 = 0x80;

/// A directory of files.
pub struct FileSink {
    root: PathBuf,
    /// The root, held open: every path below it is resolved from here.
    dirs: Root,
    /// The file system keeps user xattrs, so objects carry their identity.
    identity: bool,
    /// Existing files are replaced whoever wrote them (a user-named output).
    replace_any: bool,
    direct: bool,
    cache: CacheMode,
    readahead: Readahead,
    align: usize,
    engine: Engine,
    engine_name: &'static str,
    name_max: usize,
    notes: Vec<String>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FileSink {
    pub fn new(root: impl Into<PathBuf>, opts: FileOptions) -> Result<FileSink> {
        let root = root.into();
        if opts.create_root {
            fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        }
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Error::io(&root, io::Error::from_raw_os_error(libc::ENOTDIR))),
            Err(e) => return Err(Error::io(&root, e)),
        }
        let dirs = Root::open(&root).map_err(|e| Error::io(&root, e))?;
        let align = if opts.direct { direct_alignment(&root)? } else { 1 };
        let identity = xattr_supported(&dirs, &root)?;
        let queue_depth = opts.queue_depth.max(1);
        let mut notes = Vec::new();
        let swept = sweep_stale(&root, opts.create_root);
        if swept > 0 {
            notes.push(format!(
                "removed {swept} temporary file{} left under {} by dgen-engine processes of this host that are gone",
                if swept == 1 { "" } else { "s" },
                root.display()
            ));
        }
        let uncached = match opts.uncached {
            _ if opts.direct => false,
            Uncached::Off => false,
            Uncached::On if uncached_supported(&root)? => true,
            Uncached::On => {
                return Err(Error::InvalidValue {
                    key: "target.file.uncached",
                    value: "true".into(),
                    reason: format!(
                        "this kernel or the file system under {} does not take uncached buffered writes \
                         (RWF_DONTCACHE: Linux 6.14 or later, on ext4, XFS or btrfs); use false or \"auto\"",
                        root.display()
                    ),
                })
            }
            Uncached::Auto => {
                let yes = uncached_supported(&root)?;
                if !yes {
                    notes.push("uncached buffered writes are not supported here; writing plainly buffered".into());
                }
                yes
            }
        };
        let write_flags = if uncached { RWF_DONTCACHE } else { 0 };
        let use_uring = match opts.engine {
            FileEngine::Pwrite => false,
            FileEngine::IoUring => {
                uring::probe().map_err(|e| {
                    Error::sink(format!("file:{}", root.display()), format!("io_uring is not available here: {e}"))
                })?;
                true
            }
            FileEngine::Auto => match uring::probe() {
                Ok(()) => true,
                Err(e) => {
                    notes.push(format!("io_uring is not available ({e}); using pwrite"));
                    false
                }
            },
        };
        let (engine, engine_name) = if use_uring {
            let ring = Ring::start(queue_depth, !opts.direct, write_flags)
                .map_err(|e| Error::sink(format!("file:{}", root.display()), format!("cannot start io_uring: {e}")))?;
            (Engine::Uring(ring), if uncached { "io_uring, uncached" } else { "io_uring" })
        } else {
            let (tx, rx) = crossbeam_channel::unbounded::<Job>();
            let mut workers = Vec::new();
            for i in 0..queue_depth {
                let rx = rx.clone();
                let w = std::thread::Builder::new()
                    .name(format!("dgen-pwrite-{i}"))
                    .spawn(move || pwrite_worker(rx, write_flags))
                    .map_err(|e| Error::resource_from("cannot start pwrite threads", e))?;
                workers.push(w);
            }
            (Engine::Pwrite { tx: Some(tx), workers }, if uncached { "pwrite, uncached" } else { "pwrite" })
        };
        let name_max = name_max(&root);
        if !identity {
            notes.push(format!(
                "the file system under {} keeps no user extended attributes: objects written here carry no \
                 identity, so a plugin can read, list or delete only what its own run wrote, and no existing \
                 file is replaced",
                root.display()
            ));
        }
        Ok(FileSink {
            root,
            dirs,
            identity,
            replace_any: opts.replace_any,
            direct: opts.direct,
            cache: opts.cache,
            readahead: opts.readahead,
            align,
            engine,
            engine_name,
            name_max,
            notes,
        })
    }

    /// One-line remarks for the user made when the sink opened (io_uring fell back to pwrite, stale
    /// temporaries removed).
    pub fn opening_notes(&self) -> &[String] {
        &self.notes
    }

    fn open_flags(&self) -> i32 {
        if self.direct {
            libc::O_DIRECT
        } else {
            0
        }
    }
}

impl Sink for FileSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: self.engine_name,
            alignment: self.align,
            min_write: 0,
            preferred_write: None,
            max_object: i64::MAX as u64,
            max_component: self.name_max,
        }
    }

    fn describe(&self) -> String {
        format!("file:{}", self.root.display())
    }

    fn use_pool(&self, pool: &BufferPool) {
        if let Engine::Uring(ring) = &self.engine {
            ring.register(pool);
        }
    }

    fn create(&self, name: &str, size: Option<u64>, identity: &Identity) -> Result<Box<dyn ObjectWriter + '_>> {
        super::check_name(name, &self.capabilities())?;
        let path = self.root.join(name);
        let (dir, file_name) = self.dirs.parent(name, true).map_err(|e| Error::io(&path, e))?;
        let tmp = temp_name(file_name, self.name_max);
        let file = beneath::create_new(&dir, &tmp, self.open_flags()).map_err(|e| Error::io(&path, e))?;
        let registered = crate::sink::interrupt::temp_opened(&dir, &tmp);
        let mut object = FileObject {
            registered,
            file: Arc::new(file),
            tmp,
            name: file_name.to_string(),
            path: Arc::new(path.clone()),
            dir,
            align: self.align,
            engine: self,
            open: true,
        };
        if self.identity {
            beneath::set_identity(&object.file, identity).map_err(|e| Error::io(&path, e))?;
        }
        // Whether the file system holds a file this large at all: setting the length of the empty
        // temporary allocates nothing, and a refusal (EFBIG) comes before a byte is written.
        if let Some(size) = size.filter(|&s| s > 1 << 30) {
            let fits = object.file.set_len(size).and_then(|()| object.file.set_len(0));
            if let Err(e) = fits {
                object.remove_tmp();
                return Err(match e.raw_os_error() {
                    Some(libc::EFBIG) | Some(libc::EINVAL) => {
                        let why = format!(
                            "the file system does not hold a file of {} ({size} bytes)",
                            crate::size::format_size(size)
                        );
                        Error::storage(Failure::NoSpace, path.display().to_string(), why, Some(Arc::new(e)))
                    }
                    _ => Error::io(&path, e),
                });
            }
        }
        Ok(Box::new(object))
    }

    fn open(&self, name: &str) -> Result<Box<dyn ObjectReader>> {
        super::check_name(name, &self.capabilities())?;
        let path = self.root.join(name);
        let file = self.dirs.open_file(name, self.open_flags()).map_err(|e| Error::io(&path, e))?;
        let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let identity = beneath::identity(&file);
        if !self.direct && self.cache == CacheMode::Drop {
            // Dirty pages cannot be dropped: write them out first (a file of this run may still be
            // in the page cache), then evict, so the read comes from the device, not from memory.
            file.sync_all().map_err(|e| Error::io(&path, e))?;
            let _ = nix::fcntl::posix_fadvise(&file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
        }
        let cached = if self.direct { Some(0.0) } else { resident_share(&file, size) };
        let advice = match self.readahead {
            _ if self.direct => None,
            Readahead::Normal => None,
            Readahead::Sequential => Some(nix::fcntl::PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL),
            Readahead::Off => Some(nix::fcntl::PosixFadviseAdvice::POSIX_FADV_RANDOM),
        };
        if let Some(a) = advice {
            // Advice only: a file system that ignores it reads as it would anyway.
            let _ = nix::fcntl::posix_fadvise(&file, 0, 0, a);
        }
        let ring = match &self.engine {
            Engine::Uring(ring) => ring.reads(),
            Engine::Pwrite { .. } => None,
        };
        Ok(Box::new(FileReader { file, path, size, cached, ring, identity }))
    }

    fn stat(&self, name: &str) -> Result<Option<ObjectInfo>> {
        super::check_name(name, &self.capabilities())?;
        let path = self.root.join(name);
        match self.dirs.object(name) {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn delete(&self, name: &str) -> Result<()> {
        super::check_name(name, &self.capabilities())?;
        let path = self.root.join(name);
        let missing = || Error::storage(Failure::NotFound, path.display().to_string(), "no such object", None);
        let (dir, last) = match self.dirs.parent(name, false) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        match beneath::object_at(&dir, last) {
            Ok(o) if o.identity.is_some() => {}
            Ok(_) => return Err(missing()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(Error::io(&path, e)),
        }
        beneath::unlink_in(&dir, last).map_err(|e| Error::io(&path, e))
    }

    fn list(&self, prefix: &str, stop: &(dyn Fn() -> bool + Sync)) -> Result<Listing> {
        // Only the directory the prefix names can hold matches: start there.
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        if dir_part.split('/').any(|c| c == ".." || c == ".") || prefix.starts_with('/') {
            return Err(Error::InvalidValue {
                key: "list prefix",
                value: crate::untrusted::sanitize(prefix, 200),
                reason: "must stay below the target root".into(),
            });
        }
        let mut found = Listing::default();
        let start = match self.dirs.dir(dir_part, false) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(Error::io(self.root.join(dir_part), e)),
        };
        let mut dirs: Vec<(OwnedFd, String)> = vec![(start, dir_part.to_string())];
        let mut looked = 0u64;
        while let Some((dir, rel)) = dirs.pop() {
            let at = || self.root.join(&rel);
            let entries = match beneath::entries(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(at(), e)),
            };
            for (file_name, kind) in entries {
                looked += 1;
                if looked.is_multiple_of(256) && stop() {
                    return Err(Error::Cancelled);
                }
                let name = if rel.is_empty() { file_name.clone() } else { format!("{rel}/{file_name}") };
                match kind {
                    // Descend only where a match can be below (never through a symlink).
                    Kind::Dir if name.starts_with(prefix) || prefix.starts_with(&format!("{name}/")) => {
                        match beneath::open_dir(&dir, &file_name) {
                            Ok(d) => dirs.push((d, name)),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(Error::io(at().join(&file_name), e)),
                        }
                    }
                    Kind::File if name.starts_with(prefix) && !is_temporary(&file_name) => {
                        // Only the engine's objects: those carrying an identity.
                        if let Ok(ObjectInfo { size, identity: Some(_) }) = beneath::object_at(&dir, &file_name) {
                            found.count += 1;
                            found.bytes += size;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(found)
    }

    fn keeps_identity(&self) -> bool {
        self.identity
    }

    fn open_region(&self, name: &str, req: &RegionRequest) -> Result<OpenRegion> {
        region::open(self, name, req)
    }

    fn stamp_region(&self, region: &OpenRegion, identity: &Identity) -> Result<()> {
        region::stamp(self, region, identity)
    }
}
