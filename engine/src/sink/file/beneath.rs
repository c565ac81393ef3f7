//! Paths below a target root, reached without following a symlink and without opening anything
//! but directories and regular files.
//!
//! A plugin names objects by relative paths, and the root may hold symlinks someone else made (to
//! `/etc`, to the compiled-plugin cache, to another team's data). So no path below the root is
//! handed to the kernel whole: from a descriptor of the root, each directory is opened with
//! `O_DIRECTORY | O_NOFOLLOW` (a symlink fails) and the last component is acted on relative to its
//! directory's descriptor (`openat`, `renameat`, `unlinkat`, `fstatat` with `O_NOFOLLOW` /
//! `AT_SYMLINK_NOFOLLOW`). Names never hold `..` (checked before they get here), so nothing can
//! climb out. Files are opened `O_NONBLOCK` and checked to be regular before use: a FIFO, a device
//! or a socket is never read or waited on.
//!
//! The root itself is the user's choice and may be reached through a symlink.

use crate::object::identity::{Identity, XATTR};
use crate::sink::ObjectInfo;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// A target root, held open.
pub struct Root {
    fd: OwnedFd,
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `openat` of one component, retried on EINTR.
fn openat(dir: &impl AsRawFd, name: &str, flags: i32, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    loop {
        // SAFETY: a valid descriptor and a NUL-terminated name; the result is a new descriptor we own.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
        if fd >= 0 {
            // SAFETY: `fd` was just returned by openat and is owned by no one else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Directory `name` of `dir`, without following a symlink: one there fails (`ENOTDIR` or
/// `ELOOP`), which is reported as "not found" below the root.
pub fn open_dir(dir: &impl AsRawFd, name: &str) -> io::Result<OwnedFd> {
    openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0).map_err(no_symlink)
}

/// A symlink met where a directory or a file was expected: as if nothing were there.
fn no_symlink(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(io::ErrorKind::NotFound, "no such object"),
        _ => e,
    }
}

/// What is at a name, not following a symlink.
pub enum Kind {
    Missing,
    File,
    Dir,
    /// A symlink, a FIFO, a device, a socket.
    Other,
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Root> {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a NUL-terminated path; the result is a new descriptor we own.
        let fd = check(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        // SAFETY: just opened, owned by no one else.
        Ok(Root { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// The directory holding `name`'s last component (made when missing if `create`), and that
    /// component.
    pub fn parent<'n>(&self, name: &'n str, create: bool) -> io::Result<(OwnedFd, &'n str)> {
        let (dirs, last) = name.rsplit_once('/').unwrap_or(("", name));
        Ok((self.dir(dirs, create)?, last))
    }

    /// Directory `rel` below the root ("" is the root), made when missing if `create`.
    pub fn dir(&self, rel: &str, create: bool) -> io::Result<OwnedFd> {
        let mut dir = self.fd.try_clone()?;
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            dir = match open_dir(&dir, part) {
                Ok(d) => d,
                Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                    let c = cstr(part)?;
                    // SAFETY: a valid descriptor and a NUL-terminated name.
                    let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o777) };
                    if rc < 0 {
                        let e = io::Error::last_os_error();
                        // Another writer may have made it meanwhile.
                        if e.kind() != io::ErrorKind::AlreadyExists {
                            return Err(e);
                        }
                    }
                    open_dir(&dir, part)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(dir)
    }

    /// Opens regular file `name` for reading (with `flags` added, such as `O_DIRECT`); anything
    /// else — missing, a symlink, a FIFO, a device — is "not found".
    pub fn open_file(&self, name: &str, flags: i32) -> io::Result<File> {
        let (dir, last) = self.parent(name, false)?;
        open_regular(&dir, last, flags)
    }

    /// The size and identity of regular file `name` (see [`object_at`]).
    pub fn object(&self, name: &str) -> io::Result<ObjectInfo> {
        let (dir, last) = self.parent(name, false)?;
        object_at(&dir, last)
    }
}

/// What is at `name` in `dir`, not following a symlink.
pub fn kind_at(dir: &impl AsRawFd, name: &str) -> io::Result<Kind> {
    let c = cstr(name)?;
    // SAFETY: fstatat fills the zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::NotFound { Ok(Kind::Missing) } else { Err(e) };
    }
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        _ => Kind::Other,
    })
}

/// Opens regular file `name` of `dir` for reading, not following a symlink and never blocking on
/// a FIFO; anything but a regular file is "not found".
pub fn open_regular(dir: &impl AsRawFd, name: &str, flags: i32) -> io::Result<File> {
    let fd = openat(dir, name, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | flags, 0).map_err(no_symlink)?;
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "not a regular file"));
    }
    // Back to blocking: io_uring answers a read of an O_NONBLOCK file that would wait with EAGAIN
    // instead of waiting for it.
    crate::untrusted::set_blocking(&file);
    Ok(file)
}

/// The size and identity of regular file `name` of `dir` (its identity `None` when it carries
/// none: the engine did not write it); anything but a regular file is "not found".
pub fn object_at(dir: &impl AsRawFd, name: &str) -> io::Result<ObjectInfo> {
    let file = open_regular(dir, name, 0)?;
    Ok(ObjectInfo { size: file.metadata()?.len(), identity: identity(&file) })
}

/// Opens regular file `name` of `dir` for reading and writing in place (an operations region),
/// making it when missing if `create`; never through a symlink, never a FIFO or a device. Says
/// whether it was made.
pub fn open_in_place(dir: &impl AsRawFd, name: &str, flags: i32, create: bool) -> io::Result<(File, bool)> {
    let base = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK | flags;
    let (fd, made) = match openat(dir, name, base, 0) {
        Ok(fd) => (fd, false),
        Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
            (openat(dir, name, base | libc::O_CREAT | libc::O_EXCL, 0o666)?, true)
        }
        Err(e) => return Err(no_symlink(e)),
    };
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "not a regular file"));
    }
    crate::untrusted::set_blocking(&file);
    Ok((file, made))
}

/// Creates file `name` in `dir` (it must not exist; never through a symlink) for writing.
pub fn create_new(dir: &impl AsRawFd, name: &str, flags: i32) -> io::Result<File> {
    let fd = openat(dir, name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | flags, 0o666)?;
    Ok(File::from(fd))
}

pub fn rename_in(dir: &impl AsRawFd, from: &str, to: &str) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: valid descriptors and NUL-terminated names.
    check(unsafe { libc::renameat(dir.as_raw_fd(), f.as_ptr(), dir.as_raw_fd(), t.as_ptr()) }).map(drop)
}

pub fn unlink_in(dir: &impl AsRawFd, name: &str) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: a valid descriptor and a NUL-terminated name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
}

/// Stamps an identity on an open file. `Ok(false)`: the file system holds no user xattrs.
pub fn set_identity(file: &File, id: &Identity) -> io::Result<bool> {
    let (name, value) = (cstr(XATTR)?, id.stored());
    // SAFETY: a valid descriptor, a NUL-terminated name and a live value buffer.
    let rc = unsafe { libc::fsetxattr(file.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOTSUP) => Ok(false),
        _ => Err(e),
    }
}

/// The identity stamped on an open file, if any.
pub fn identity(file: &File) -> Option<Identity> {
    let name = cstr(XATTR).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: a valid descriptor, a NUL-terminated name and a buffer of the length given.
    let n = unsafe { libc::fgetxattr(file.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return None;
    }
    Identity::parse(&buf[..n as usize])
}

/// A directory's entries and what each is, not following symlinks.
pub fn entries(dir: &OwnedFd) -> io::Result<Vec<(String, Kind)>> {
    let mut d = nix::dir::Dir::from_fd(dir.try_clone()?).map_err(io::Error::from)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(io::Error::from)?;
        let Ok(name) = e.file_name().to_str() else { continue };
        if name == "." || name == ".." {
            continue;
        }
        let kind = match e.file_type() {
            Some(nix::dir::Type::Directory) => Kind::Dir,
            Some(nix::dir::Type::File) => Kind::File,
            // Some file systems do not say: look.
            None => kind_at(dir, name)?,
            Some(_) => Kind::Other,
        };
        out.push((name.to_string(), kind));
    }
    Ok(out)
}
