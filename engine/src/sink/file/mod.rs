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
mod release;
mod uring;

pub use release::{close_in_background, close_late};

use super::{Capabilities, Listing, ObjectInfo, ObjectReader, ObjectWriter, Sink, WriteReq};
use crate::error::{Error, Failure, Result};
use crate::keys::Keys;
use crate::object::identity::Identity;
use crate::pool::BufferPool;
use beneath::{Kind, Root};
use crossbeam_channel::Sender;
use job::Job;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use uring::Ring;

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

/// `RWF_DONTCACHE` (include/uapi/linux/fs.h, Linux 6.14); the libc crate does not name it yet.
const RWF_DONTCACHE: i32 = 0x80;

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

enum Engine {
    Pwrite { tx: Option<Sender<Job>>, workers: Vec<JoinHandle<()>> },
    Uring(Ring),
}

impl Engine {
    fn submit(&self, job: Job) {
        match self {
            Engine::Pwrite { tx: Some(tx), .. } => {
                if let Err(e) = tx.send(job) {
                    e.into_inner().fail(io::Error::other("pwrite workers have stopped"));
                }
            }
            Engine::Pwrite { tx: None, .. } => job.fail(io::Error::other("pwrite workers have stopped")),
            Engine::Uring(ring) => ring.submit(job),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Engine::Pwrite { tx, workers } = self {
            tx.take();
            for w in workers.drain(..) {
                let _ = w.join();
            }
        }
    }
}

/// `flags`: the `RWF_*` flags of every write (0: a plain `pwrite`).
fn pwrite_worker(rx: crossbeam_channel::Receiver<Job>, flags: i32) {
    for job in rx.iter() {
        let mut done = 0;
        let result = loop {
            if done == job.len {
                break Ok(());
            }
            match pwrite_flags(&job.file, &job.buf.as_slice()[done..job.len], job.offset + done as u64, flags) {
                Ok(0) => break Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0 bytes")),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => job.succeed(),
            Err(e) => job.fail(e),
        }
    }
}

/// One `pwritev2` of `buf` at `offset` with `flags` (a plain `pwrite` when they are 0).
fn pwrite_flags(file: &File, buf: &[u8], offset: u64, flags: i32) -> io::Result<usize> {
    if flags == 0 {
        return nix::sys::uio::pwrite(file, buf, offset as i64).map_err(io::Error::from);
    }
    let iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: one iovec over a live slice, which the kernel only reads.
    let n = unsafe { libc::pwritev2(file.as_raw_fd(), &iov, 1, offset as i64, flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Whether buffered writes with `RWF_DONTCACHE` work under `dir` (kernel and file system), tried on
/// a small probe file.
fn uncached_supported(dir: &Path) -> Result<bool> {
    let probe = dir.join(format!(".dgen-uncached-probe.{}", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&probe)
        .map_err(|e| Error::io(&probe, e))?;
    let r = pwrite_flags(&file, &[0u8; 4096], 0, RWF_DONTCACHE);
    let _ = fs::remove_file(&probe);
    match r {
        Ok(_) => Ok(true),
        // Older kernels reject the unknown flag; file systems without support say so.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)) => Ok(false),
        Err(e) => Err(Error::io(&probe, e)),
    }
}

/// Whether files under the root keep user extended attributes (where identities are stamped),
/// tried on a small probe file.
fn xattr_supported(dirs: &Root, root: &Path) -> Result<bool> {
    let dir = dirs.dir("", false).map_err(|e| Error::io(root, e))?;
    let probe = format!(".dgen-xattr-probe.{}.{}", std::process::id(), TMP_COUNTER.fetch_add(1, Ordering::Relaxed));
    let file = beneath::create_new(&dir, &probe, 0).map_err(|e| Error::io(root.join(&probe), e))?;
    let id = Identity::parse(b"dgen1:00000000000000000000000000000000").expect("a valid identity");
    let r = beneath::set_identity(&file, &id);
    let _ = beneath::unlink_in(&dir, &probe);
    r.map_err(|e| Error::io(root.join(&probe), e))
}

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
                    .map_err(|e| Error::Resource(format!("cannot start pwrite threads: {e}")))?;
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

/// NAME_MAX of the file system under `dir` (255 where it cannot be asked).
fn name_max(dir: &Path) -> usize {
    nix::unistd::pathconf(dir, nix::unistd::PathconfVar::NAME_MAX)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n >= 14)
        .unwrap_or(255)
}

/// This host, as 8 hex digits in temporary names: a temporary is only ever swept by a process of the
/// host that made it (a target root on shared storage is written by many hosts at once).
fn host_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        // FNV-1a: stable across builds and machines, unlike std's hasher.
        let h = host.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        format!("{:08x}", h as u32)
    })
}

/// `.NAME.dgen-tmp.HOST.PID.N`, with NAME cut (at a character boundary) so the whole is at most
/// `name_max` bytes.
fn temp_name(file_name: &str, name_max: usize) -> String {
    let suffix =
        format!(".dgen-tmp.{}.{}.{}", host_tag(), std::process::id(), TMP_COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut keep = name_max.saturating_sub(1 + suffix.len()).min(file_name.len());
    while !file_name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(".{}{suffix}", &file_name[..keep])
}

/// The pid in a temporary name of this host, if `name` is one.
fn temp_owner(name: &str) -> Option<i32> {
    let mut parts = name.rsplitn(5, '.');
    let (_n, pid, host, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let tag_ok = tag.ends_with("dgen-tmp") && name.starts_with('.');
    (tag_ok && host == host_tag()).then(|| pid.parse().ok()).flatten()
}

/// Removes temporaries under `root` (the whole tree when `tree`, else `root` itself) whose process is
/// gone; returns how many.
fn sweep_stale(root: &Path, tree: bool) -> usize {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                if tree {
                    dirs.push(e.path());
                }
                continue;
            }
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(temp_owner) else { continue };
            let gone = pid > 0
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH);
            if gone && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// The direct-I/O alignment of files under `dir`, found by making a small probe file there.
fn direct_alignment(dir: &Path) -> Result<usize> {
    let probe = dir.join(format!(".dgen-dio-probe.{}", std::process::id()));
    let file = OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(&probe);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Err(Error::io(dir, io::Error::other("the file system does not support O_DIRECT")))
        }
        Err(e) => return Err(Error::io(&probe, e)),
    };
    let _ = fs::remove_file(&probe);
    // SAFETY: statx fills the zeroed struct; AT_EMPTY_PATH with "" queries the open fd.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::statx(file.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_DIOALIGN, &mut stx) };
    let align = if rc == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0 {
        (stx.stx_dio_mem_align.max(stx.stx_dio_offset_align) as usize).max(512)
    } else {
        // Kernels before 6.1 do not report it; 4 KiB satisfies every common device.
        4096
    };
    Ok(align.next_power_of_two())
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
        let mut object = FileObject {
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
                value: crate::input::sanitize(prefix, 200),
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
}

/// Whether a file name is one of our temporaries (an object not yet complete) or probe files.
fn is_temporary(file_name: &str) -> bool {
    file_name.starts_with('.')
        && (file_name.contains(".dgen-tmp.")
            || file_name.starts_with(".dgen-dio-probe.")
            || file_name.starts_with(".dgen-xattr-probe."))
}

/// An open object; it borrows its sink, whose engine carries its writes.
struct FileObject<'a> {
    file: Arc<File>,
    /// Its temporary name and final name, in `dir`.
    tmp: String,
    name: String,
    /// The final path, for messages.
    path: Arc<PathBuf>,
    dir: OwnedFd,
    align: usize,
    engine: &'a FileSink,
    open: bool,
}

impl FileObject<'_> {
    fn remove_tmp(&mut self) {
        if self.open {
            self.open = false;
            if beneath::unlink_in(&self.dir, &self.tmp).is_ok() {
                // Its last close frees what it holds: not on the way out (see `release`).
                release::defer(&self.file);
            }
        }
    }

    /// Whether the final name may be taken: nothing is there, or an object this engine wrote (it
    /// carries an identity). A file of anyone else's, a directory, a symlink or a FIFO is left alone.
    fn may_replace(&self) -> io::Result<()> {
        let refuse = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{what} is already there, which dgen-engine did not write: it is not replaced (it carries no \
                     identity: another program made it, or a dgen-engine older than this one; remove it or \
                     choose another target root)"
                ),
            ))
        };
        match beneath::kind_at(&self.dir, &self.name)? {
            Kind::Missing => Ok(()),
            // The user named this output: what was there goes, as with `cp` (a directory stays).
            Kind::File | Kind::Other if self.engine.replace_any => Ok(()),
            Kind::File => match beneath::object_at(&self.dir, &self.name) {
                Ok(o) if self.engine.identity && o.identity.is_some() => Ok(()),
                Ok(_) => refuse("a file"),
                // Gone meanwhile (or turned into something that is not a file).
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            },
            Kind::Dir => refuse("a directory"),
            Kind::Other => refuse("a symlink, FIFO, device or socket"),
        }
    }
}

impl ObjectWriter for FileObject<'_> {
    fn submit(&mut self, req: WriteReq) {
        // O_DIRECT: pad a short tail up to the alignment; `finish` truncates it away.
        let len = if self.align > 1 { req.len.div_ceil(self.align) * self.align } else { req.len };
        debug_assert!(len <= req.buf.capacity());
        self.engine.engine.submit(Job {
            file: self.file.clone(),
            path: self.path.clone(),
            offset: req.offset,
            len,
            buf: req.buf,
            done: req.done,
        });
    }

    fn finish(mut self: Box<Self>, size: u64) -> Result<()> {
        let path = self.path.to_path_buf();
        let result = (|| {
            if self.align > 1 && !size.is_multiple_of(self.align as u64) {
                self.file.set_len(size)?;
            }
            self.file.sync_all()?;
            self.may_replace()?;
            beneath::rename_in(&self.dir, &self.tmp, &self.name)?;
            self.open = false;
            nix::unistd::fsync(&self.dir).map_err(io::Error::from)
        })();
        result.map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                Error::storage(Failure::Denied, path.display().to_string(), e.to_string(), None)
            }
            _ => Error::io(path, e),
        })
    }

    fn abort(mut self: Box<Self>) {
        self.remove_tmp();
    }
}

impl Drop for FileObject<'_> {
    fn drop(&mut self) {
        self.remove_tmp();
    }
}

struct FileReader {
    file: File,
    path: PathBuf,
    size: u64,
    identity: Option<Identity>,
    /// The share of its pages in the page cache once opened (O_DIRECT: none are used).
    cached: Option<f64>,
    /// The sink's ring, when it writes with io_uring: reads go through it too.
    ring: Option<uring::RingReads>,
}

/// The share of `file`'s pages resident in the page cache (`mincore` over a read-only mapping).
/// Files over 16 GiB are sampled: 64 windows of 256 MiB spread over them.
fn resident_share(file: &File, size: u64) -> Option<f64> {
    const WINDOW: u64 = 256 << 20;
    const MAX_WINDOWS: u64 = 64;
    if size == 0 {
        return Some(0.0);
    }
    // SAFETY: plain sysconf query.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    };
    let windows = size.div_ceil(WINDOW);
    let step = windows.div_ceil(MAX_WINDOWS).max(1);
    let (mut resident, mut pages) = (0u64, 0u64);
    let mut vec = Vec::new();
    let mut w = 0;
    while w < windows {
        let off = w * WINDOW;
        let len = WINDOW.min(size - off) as usize;
        // SAFETY: a fresh read-only shared mapping of our own open file, within its size; it is only
        // passed to mincore (never dereferenced) and unmapped before returning.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), off as i64)
        };
        if addr == libc::MAP_FAILED {
            return None;
        }
        let n = len.div_ceil(page as usize);
        vec.resize(n, 0u8);
        // SAFETY: `addr` is page-aligned and maps `len` bytes; `vec` has one byte per page.
        let rc = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(addr, len) };
        if rc != 0 {
            return None;
        }
        resident += vec.iter().filter(|&&b| b & 1 == 1).count() as u64;
        pages += n as u64;
        w += step;
    }
    Some(resident as f64 / pages.max(1) as f64)
}

impl ObjectReader for FileReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn cached_fraction(&self) -> Option<f64> {
        self.cached
    }

    fn identity(&self) -> Option<Identity> {
        self.identity
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        // At the end without a syscall: O_DIRECT would refuse the unaligned offset a short read leaves.
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        if let Some(ring) = &self.ring {
            if let Some(r) = ring.read(self.file.as_raw_fd(), offset, buf) {
                return r.map_err(|e| Error::io(&self.path, e));
            }
        }
        loop {
            match nix::sys::uio::pread(&self.file, buf, offset as i64) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::io(&self.path, io::Error::from(e))),
            }
        }
    }
}
