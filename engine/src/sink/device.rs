//! What a block device holds, found before anything is written to it: a device with a file system,
//! a partition table, swap, an LVM or LUKS header, or one that is mounted or held by another device
//! (a partition of it mounted, a device-mapper target on it) is never overwritten unless the
//! workload says so by name. The signatures are read from the device itself (the first 128 KiB),
//! the mounts from `/proc/self/mountinfo`, the holders from sysfs — no external tool.
//!
//! The device target of the operations engine (issue 31) refuses on what [`holder`] finds; it is
//! here first so that the rule is one function with its tests.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// What was found on a device, in words a user recognises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A file system: `ext2/3/4`, `XFS`, `btrfs`, `NTFS`, `ISO 9660`.
    FileSystem(&'static str),
    /// A partition table (`GPT`), or an MBR / boot sector (`MBR or boot sector`).
    Partitions(&'static str),
    /// Swap, an LVM physical volume, a LUKS container.
    Other(&'static str),
    /// Mounted at this path.
    Mounted(String),
    /// Held by another device (a partition in use, a device-mapper target): its name in sysfs.
    HeldBy(String),
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::FileSystem(k) => write!(f, "a file system ({k})"),
            Holder::Partitions(k) => write!(f, "a partition table ({k})"),
            Holder::Other(k) => write!(f, "{k}"),
            Holder::Mounted(at) => write!(f, "a file system mounted at {at}"),
            Holder::HeldBy(by) => write!(f, "a device that {by} holds (a partition in use, or a device-mapper target)"),
        }
    }
}

/// How much of the start of a device the signatures need.
const PROBE: usize = 128 << 10;

/// The signature in `head` (the first bytes of a device), if any.
pub fn signature(head: &[u8]) -> Option<Holder> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    // File systems first: a boot sector's 0x55AA is also on a FAT or NTFS volume.
    if at(1080, &[0x53, 0xEF]) {
        return Some(Holder::FileSystem("ext2/3/4"));
    }
    if at(0, b"XFSB") {
        return Some(Holder::FileSystem("XFS"));
    }
    if at(65600, b"_BHRfS_M") {
        return Some(Holder::FileSystem("btrfs"));
    }
    if at(3, b"NTFS    ") {
        return Some(Holder::FileSystem("NTFS"));
    }
    if at(32769, b"CD001") {
        return Some(Holder::FileSystem("ISO 9660"));
    }
    if at(0, b"LUKS\xba\xbe") {
        return Some(Holder::Other("a LUKS container"));
    }
    if (0..4).any(|s| at(s * 512, b"LABELONE")) {
        return Some(Holder::Other("an LVM physical volume"));
    }
    if at(4086, b"SWAPSPACE2") || at(4086, b"SWAP-SPACE") {
        return Some(Holder::Other("swap"));
    }
    if at(512, b"EFI PART") {
        return Some(Holder::Partitions("GPT"));
    }
    if at(510, &[0x55, 0xAA]) {
        return Some(Holder::Partitions("MBR or boot sector"));
    }
    None
}

/// What holds the block device open as `file` (at `path`, for messages), if anything: mounted, held
/// by another device, or carrying a signature.
pub fn holder(file: &File, path: &Path) -> io::Result<Option<Holder>> {
    let rdev = file.metadata()?.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    if let Some(at) = mounted(major, minor) {
        return Ok(Some(Holder::Mounted(at)));
    }
    let holders = Path::new("/sys/dev/block").join(format!("{major}:{minor}")).join("holders");
    if let Some(by) = std::fs::read_dir(holders).ok().and_then(|mut d| d.next()).and_then(|e| e.ok()) {
        return Ok(Some(Holder::HeldBy(by.file_name().to_string_lossy().into_owned())));
    }
    let mut head = vec![0u8; PROBE];
    let mut filled = 0;
    while filled < PROBE {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    head.truncate(filled);
    Ok(signature(&head))
}

/// Where the device `major:minor` is mounted, from this process's mount table.
fn mounted(major: u64, minor: u64) -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let id = format!("{major}:{minor}");
    // Fields: mount id, parent id, major:minor, root, mount point, …
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&id.as_str())).then(|| f.get(4).unwrap_or(&"?").to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(offset: usize, magic: &[u8]) -> Vec<u8> {
        let mut head = vec![0u8; PROBE];
        head[offset..offset + magic.len()].copy_from_slice(magic);
        head
    }

    #[test]
    fn each_signature_is_named_and_zeros_are_nothing() {
        assert_eq!(signature(&vec![0u8; PROBE]), None);
        assert_eq!(signature(&[]), None);
        let cases: [(usize, &[u8], &str); 10] = [
            (1080, &[0x53, 0xEF], "a file system (ext2/3/4)"),
            (0, b"XFSB", "a file system (XFS)"),
            (65600, b"_BHRfS_M", "a file system (btrfs)"),
            (3, b"NTFS    ", "a file system (NTFS)"),
            (32769, b"CD001", "a file system (ISO 9660)"),
            (0, b"LUKS\xba\xbe", "a LUKS container"),
            (512, b"LABELONE", "an LVM physical volume"),
            (4086, b"SWAPSPACE2", "swap"),
            (512, b"EFI PART", "a partition table (GPT)"),
            (510, &[0x55, 0xAA], "a partition table (MBR or boot sector)"),
        ];
        for (offset, magic, said) in cases {
            let found = signature(&with(offset, magic)).unwrap_or_else(|| panic!("{said}: not found"));
            assert_eq!(found.to_string(), said);
        }
        // A head shorter than a signature's offset is not read past.
        assert_eq!(signature(&with(1080, &[0x53, 0xEF])[..1000]), None);
    }

    #[test]
    fn a_mounted_device_is_found_by_its_numbers() {
        // The root file system's device numbers, as a mount sees them.
        let dev = std::fs::metadata("/").unwrap().dev();
        let at = mounted(nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
        assert!(at.is_some(), "the root's device is not in the mount table");
        assert_eq!(mounted(4095, 1_048_575), None);
    }
}
