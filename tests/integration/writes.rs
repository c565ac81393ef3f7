//! Writing files through `dgen-engine gen` as a user would, including the ways it can go wrong: a full
//! file system, no permission, a missing directory, a corrupted or truncated file found by `--verify`,
//! compressed output, and Ctrl-C.

use crate::common::*;
use dgen_engine::Generator;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

fn expected(seed: u64, d: f64, c: f64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Generator::new(seed, profile(d, c, 4096)).fill(0, 0, &mut v);
    v
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn engines_and_direct_io_write_the_stream() {
    let dir = tempdir("engines");
    let size = (5 << 20) + 4097; // not a multiple of the O_DIRECT alignment
    let want = expected(8, 1.5, 2.0, size);
    for engine in ["io_uring", "pwrite"] {
        for direct in [false, true] {
            let path = dir.join(format!("{engine}-{direct}.bin"));
            let mut args = vec![
                "gen",
                "--size",
                "5246977",
                "--seed",
                "8",
                "--dedup",
                "1.5",
                "--compress",
                "2",
                "--engine",
                engine,
                "--buffer-size",
                "1MiB",
                "--buffers",
                "3",
                "--verify",
                "-o",
                path.to_str().unwrap(),
            ];
            if direct {
                args.push("--direct");
            }
            let o = run(&args);
            assert!(o.status.success(), "{engine} direct={direct}: {}", shown(&o));
            let err = shown(&o);
            assert!(err.contains(&format!("engine {engine}")), "{err}");
            assert!(err.contains("identical (5246977 bytes)"), "{err}");
            assert!(err.contains("latency p50"), "{err}");
            assert!(err.contains("waiting for buffers"), "{err}");
            assert!(std::fs::read(&path).unwrap() == want, "{engine} direct={direct}: bytes differ");
        }
    }
    assert_eq!(listing(&dir).len(), 4, "temporaries left: {:?}", listing(&dir));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_unaligned_buffer_size_is_rounded_up_for_the_writes_and_the_verify() {
    let dir = tempdir("unaligned-buffer");
    let want = expected(9, 1.0, 1.0, 3 << 20);
    for direct in [false, true] {
        let path = dir.join(format!("direct-{direct}.bin"));
        let mut args = vec!["gen", "--size", "3MiB", "--seed", "9", "--buffer-size", "1000000", "--verify", "-o"];
        args.push(path.to_str().unwrap());
        if direct {
            args.push("--direct");
        }
        let o = run(&args);
        let err = shown(&o);
        assert!(o.status.success(), "direct={direct}: {err}");
        assert!(err.contains("(16 x 980 KiB)") && err.contains("identical (3145728 bytes)"), "{err}");
        assert!(std::fs::read(&path).unwrap() == want, "direct={direct}: bytes differ");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn verify_finds_a_flipped_byte_and_a_truncated_file() {
    let dir = tempdir("verify");
    let path = dir.join("data.bin");
    let p = path.to_str().unwrap();
    let base = ["gen", "--size", "24MiB", "--seed", "31", "--compress", "3", "-o", p];
    let o = run(&base);
    assert!(o.status.success(), "{}", shown(&o));
    let verify_only = [&base[..], &["--verify-only"]].concat();
    let o = run(&verify_only);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));

    // One flipped byte in the middle.
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let at = 12 * 1024 * 1024 + 12345;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
    let o = run(&verify_only);
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
    assert!(shown(&o).contains(&format!("differs at byte offset {at}")), "{}", shown(&o));

    // Truncated (the flip undone first, so only the length is wrong).
    f.write_all_at(&b, at).unwrap();
    f.set_len(20 << 20).unwrap();
    let o = run(&verify_only);
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
    assert!(shown(&o).contains("size mismatch: expected 25165824 bytes, found 20971520"), "{}", shown(&o));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn zstd_output_decompresses_to_the_stream_with_its_crc() {
    let dir = tempdir("zstd");
    let path = dir.join("data.bin");
    let base =
        ["gen", "--size", "40MiB", "--seed", "12", "--compress", "4", "--dedup", "2", "-o", path.to_str().unwrap()];
    let o = run(&[&base[..], &["--output-compress", "zstd:5", "--verify"]].concat());
    assert!(o.status.success(), "{}", shown(&o));
    let zst = dir.join("data.bin.zst");
    assert!(zst.exists() && !path.exists(), "{:?}", listing(&dir));
    let dec = Command::new("zstd").args(["-dc", zst.to_str().unwrap()]).output().expect("the zstd command");
    assert!(dec.status.success());
    let want = expected(12, 2.0, 4.0, 40 << 20);
    assert!(dec.stdout == want, "decompressed output differs from the stream");
    let err = shown(&o);
    let crc = format!("0x{:08x}", crc32c::crc32c(&want));
    assert!(err.contains(&format!("crc32c of the uncompressed data: {crc}")), "{err}");
    assert!(err.contains("identical (41943040 bytes)"), "{err}");
    // Uncompressed output reports the same CRC32C.
    let o = run(&base);
    assert!(shown(&o).contains(&format!("crc32c of the data: {crc}")), "{}", shown(&o));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn missing_directory_is_a_clear_error() {
    let o = run(&["gen", "--size", "1MiB", "-o", "/nonexistent-dgen-dir/sub/x.bin"]);
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    let err = shown(&o);
    assert!(err.contains("/nonexistent-dgen-dir/sub") && err.contains("No such file or directory"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn permission_denied_is_a_clear_error() {
    let dir = tempdir("perm");
    let locked = dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    let target = locked.join("x.bin");
    let o = if nix::unistd::geteuid().is_root() {
        // Root ignores mode bits: run as nobody against a root-owned directory instead.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_dgen-engine")])
            .args(["gen", "--size", "1MiB", "-o", target.to_str().unwrap()])
            .output()
            .expect("setpriv (util-linux)")
    } else {
        std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
        run(&["gen", "--size", "1MiB", "-o", target.to_str().unwrap()])
    };
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    assert!(shown(&o).contains("Permission denied") && shown(&o).contains("x.bin"), "{}", shown(&o));
    assert!(listing(&locked).is_empty());
    std::fs::remove_dir_all(dir).ok();
}

/// A file system of `size` bytes mounted on a fresh directory; unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(name: &str, size: &str) -> Option<SmallFs> {
        let dir = tempdir(name);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallFs(dir))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn full_file_system_fails_cleanly() {
    let Some(fs) = SmallFs::mount("enospc", "6m") else {
        assert!(!nix::unistd::geteuid().is_root(), "root could not mount a tmpfs");
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    for engine in ["io_uring", "pwrite"] {
        for direct in [false, true] {
            let path = fs.0.join("big.bin");
            let mut args = vec![
                "gen",
                "--size",
                "64MiB",
                "--engine",
                engine,
                "--buffer-size",
                "1MiB",
                "-o",
                path.to_str().unwrap(),
            ];
            if direct {
                args.push("--direct");
            }
            let o = run(&args);
            let err = shown(&o);
            assert_eq!(o.status.code(), Some(3), "{engine} direct={direct}: {err}");
            assert!(err.contains("No space left on device") && err.contains("big.bin"), "{err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(listing(&fs.0).is_empty(), "{engine}: left {:?}", listing(&fs.0));
        }
    }
}

#[test]
fn ctrl_c_aborts_and_leaves_no_file() {
    let dir = tempdir("sigint");
    let path = dir.join("big.bin");
    let child = bin()
        .args(["gen", "--size", "1TiB", "--buffer-size", "1MiB", "-o", path.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it get going: the temporary file appears and grows.
    let start = std::time::Instant::now();
    while listing(&dir).is_empty() && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", shown(&o));
    assert!(shown(&o).contains("interrupted"), "{}", shown(&o));
    assert!(listing(&dir).is_empty(), "left {:?}", listing(&dir));
    std::fs::remove_dir_all(dir).ok();
}
