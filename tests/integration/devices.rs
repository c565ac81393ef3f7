//! Block devices (loop devices here): what a device holds is found before anything would be written
//! to it — a file system's signature, or a mount.

use crate::common::*;
use dgen_engine::sink::device::{holder, Holder};
use std::process::Command;

/// A loop device over a file of `size` bytes; detached (and the file removed) on drop.
struct Loop {
    dev: String,
    file: std::path::PathBuf,
}

impl Loop {
    fn new(name: &str, size: u64) -> Option<Loop> {
        let file = tempdir(name).join("backing.img");
        std::fs::File::create(&file).ok()?.set_len(size).ok()?;
        let o = Command::new("losetup").args(["-f", "--show"]).arg(&file).output().ok()?;
        o.status.success().then(|| Loop { dev: String::from_utf8_lossy(&o.stdout).trim().to_string(), file })
    }

    fn holder(&self) -> Option<Holder> {
        let f = std::fs::File::open(&self.dev).unwrap();
        holder(&f, std::path::Path::new(&self.dev)).unwrap()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dev).output();
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
        let _ = std::fs::remove_dir_all(self.file.parent().unwrap());
    }
}

#[test]
fn a_file_system_or_a_mount_on_a_device_is_found() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: loop devices need root");
        return;
    }
    let Some(lo) = Loop::new("loop-ext4", 64 << 20) else {
        eprintln!("skipped: no loop device could be set up here");
        return;
    };
    assert_eq!(lo.holder(), None, "a fresh (zeroed) device holds nothing");
    let mkfs = Command::new("mkfs.ext4").args(["-q", "-F", &lo.dev]).output().expect("mkfs.ext4 (e2fsprogs)");
    assert!(mkfs.status.success(), "{}", shown(&mkfs));
    assert_eq!(lo.holder(), Some(Holder::FileSystem("ext2/3/4")));
    let at = tempdir("loop-mnt");
    let m = Command::new("mount").arg(&lo.dev).arg(&at).output().unwrap();
    if m.status.success() {
        assert!(matches!(lo.holder(), Some(Holder::Mounted(p)) if p == at.display().to_string()));
        let _ = Command::new("umount").arg(&at).output();
    }
    std::fs::remove_dir_all(at).ok();
}

#[test]
fn a_device_with_ext4_is_refused_without_destroy_and_worked_on_with_it() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: loop devices need root");
        return;
    }
    let Some(lo) = Loop::new("loop-dev-target", 32 << 20) else {
        eprintln!("skipped: no loop device could be set up here");
        return;
    };
    let mkfs = Command::new("mkfs.ext4").args(["-q", "-F", &lo.dev]).output().expect("mkfs.ext4 (e2fsprogs)");
    assert!(mkfs.status.success(), "{}", shown(&mkfs));
    let args = |extra: &[&str]| -> std::process::Output {
        let mut c = bin();
        c.args(["run", &workload("blocks.toml"), "--set", &format!("target.uri=\"dev://{}\"", lo.dev)])
            .args(["--set", "params.size=0", "--set", "data.dedup_unit=\"4KiB\""])
            .args(["--set", r#"params.phases=[{name="w",mix=[{op="write",bs="4KiB"},{op="read",bs="4KiB"}],depth=8,ops=20000,verify="end"}]"#]);
        c.args(extra).output().unwrap()
    };
    let o = args(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));
    assert!(shown(&o).contains("holds a file system (ext2/3/4)") && shown(&o).contains("destroy"), "{}", shown(&o));
    assert_eq!(lo.holder(), Some(Holder::FileSystem("ext2/3/4")), "nothing was written");
    let o = args(&["--set", "target.dev.destroy=true"]);
    assert!(o.status.success(), "{}", shown(&o));
    assert!(shown(&o).contains("8192 good, 0 lost writes"), "{}", shown(&o));
    assert_eq!(lo.holder(), None, "the ext4 superblock was overwritten with synthetic data");
}
