//! `dev:///dev/NAME`: a block device as the target of jobs of the operations engine — the device is
//! the one object, worked on in place. It takes no whole objects (no `open`/`commit`).
//!
//! A device that holds something is refused before the run starts: mounted, held by another device
//! (a partition in use, a device-mapper target) always; a file system, a partition table, swap, LVM
//! or LUKS (see [`super::device`]) unless `[target.dev] destroy = true` says, by name, that it may
//! be overwritten. The device is then opened `O_EXCL` (the kernel refuses it while anything mounts
//! it) and, by default, `O_DIRECT`.

use super::device::{holder, Holder};
use super::{Capabilities, ObjectReader, ObjectWriter, OpenRegion, RegionRequest, Sink};
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::object::identity::Identity;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;

/// The keys a workload's `[target.dev]` takes.
pub const KEYS: &[&str] = &["destroy", "direct"];

#[derive(Clone, Debug)]
pub struct DevOptions {
    /// Overwrite a device that holds a file system, partitions, swap, LVM or LUKS.
    pub destroy: bool,
    pub direct: bool,
}

/// A `dev://` target: the device and how to open it.
#[derive(Clone, Debug)]
pub struct DevTarget {
    pub path: PathBuf,
    pub options: DevOptions,
}

impl DevTarget {
    pub fn options(keys: &mut Keys) -> Result<DevOptions> {
        Ok(DevOptions { destroy: keys.flag("destroy")?.unwrap_or(false), direct: keys.flag("direct")?.unwrap_or(true) })
    }

    pub fn new(uri: &str, options: DevOptions) -> Result<DevTarget> {
        let bad = |why: &str| Error::InvalidValue { key: "target.uri", value: uri.into(), reason: why.into() };
        let path = uri.strip_prefix("dev://").ok_or_else(|| bad("is not a dev:// URI"))?;
        if !path.starts_with('/') {
            return Err(bad("needs the device's absolute path (dev:///dev/NAME)"));
        }
        Ok(DevTarget { path: PathBuf::from(path), options })
    }

    /// Checks the device and opens it.
    pub fn open(&self) -> Result<DevSink> {
        let shown = format!("dev://{}", self.path.display());
        let meta = std::fs::metadata(&self.path).map_err(|e| Error::io(&self.path, e))?;
        if !meta.file_type().is_block_device() {
            return Err(Error::InvalidValue {
                key: "target.uri",
                value: shown,
                reason: "is not a block device (a file target is file://DIR)".into(),
            });
        }
        let probe = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let found = holder(&probe, &self.path).map_err(|e| Error::io(&self.path, e))?;
        drop(probe);
        let mut notes = Vec::new();
        match found {
            None => {}
            Some(h @ (Holder::Mounted(_) | Holder::HeldBy(_))) => {
                return Err(Error::Workload {
                    at: format!("target {shown}"),
                    message: format!(
                    "{} is {h}: refusing to write to it, even with target.dev.destroy (unmount or release it first)",
                    self.path.display()
                ),
                })
            }
            Some(h) if !self.options.destroy => {
                return Err(Error::Workload {
                    at: format!("target {shown}"),
                    message: format!(
                    "{} holds {h}: refusing to overwrite it; set [target.dev] destroy = true to destroy what it holds",
                    self.path.display()
                ),
                })
            }
            Some(h) => {
                notes.push(format!("{} held {h}; overwriting it, as target.dev.destroy says", self.path.display()))
            }
        }
        let mut o = OpenOptions::new();
        o.read(true).write(true).custom_flags(libc::O_EXCL | if self.options.direct { libc::O_DIRECT } else { 0 });
        let file = o.open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let size = ioctl_u64(&file, BLKGETSIZE64).map_err(|e| Error::io(&self.path, e))?;
        let sector = ioctl_int(&file, BLKSSZGET).map_err(|e| Error::io(&self.path, e))? as u64;
        Ok(DevSink { path: self.path.clone(), shown, file, size, sector, direct: self.options.direct, notes })
    }
}

// From linux/fs.h.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKSSZGET: libc::c_ulong = 0x1268;

fn ioctl_u64(f: &File, req: libc::c_ulong) -> std::io::Result<u64> {
    let mut v: u64 = 0;
    // SAFETY: a valid descriptor and a pointer to a u64 the request fills.
    if unsafe { libc::ioctl(f.as_raw_fd(), req, &mut v) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v)
}

fn ioctl_int(f: &File, req: libc::c_ulong) -> std::io::Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: a valid descriptor and a pointer to an int the request fills.
    if unsafe { libc::ioctl(f.as_raw_fd(), req, &mut v) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v)
}

/// An open block device.
pub struct DevSink {
    path: PathBuf,
    shown: String,
    file: File,
    size: u64,
    sector: u64,
    direct: bool,
    notes: Vec<String>,
}

impl DevSink {
    pub fn opening_notes(&self) -> &[String] {
        &self.notes
    }
}

impl Sink for DevSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities { alignment: self.sector as usize, max_object: self.size, ..Capabilities::unconstrained("dev") }
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn create(&self, name: &str, _size: Option<u64>, _identity: &Identity) -> Result<Box<dyn ObjectWriter + '_>> {
        Err(Error::sink(
            &self.shown,
            format!("cannot write object '{name}': a device target takes jobs (operations in place) only"),
        ))
    }

    fn open(&self, name: &str) -> Result<Box<dyn ObjectReader>> {
        Err(Error::sink(
            &self.shown,
            format!("cannot read object '{name}': a device target takes jobs (operations in place) only"),
        ))
    }

    /// The device is the one object: any name is it.
    fn open_region(&self, _name: &str, req: &RegionRequest) -> Result<OpenRegion> {
        if req.direct.is_some_and(|d| d != self.direct) {
            return Err(Error::sink(
                &self.shown,
                "a job on a device takes the target's O_DIRECT setting ([target.dev] direct)",
            ));
        }
        let file = self.file.try_clone().map_err(|e| Error::io(&self.path, e))?;
        let align = if self.direct { self.sector.max(512) } else { 1 };
        Ok(OpenRegion { file, path: self.shown.clone(), len: self.size, identity: None, direct: self.direct, align })
    }
}
