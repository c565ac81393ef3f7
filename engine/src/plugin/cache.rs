//! The compiled-plugin cache: a component compiled to native code once, kept on disk, and loaded
//! again only when it is provably what this engine compiled.
//!
//! A compiled component is native code that wasmtime maps and runs as it is, so an entry someone
//! else could have written is a way out of the sandbox. Hence:
//! - the directory is created 0700 and used only while it is this user's and no one else can
//!   write to it (refused otherwise, naming it);
//! - beside each entry `KEY.cwasm` is `KEY.mac`, an HMAC-SHA256 of the entry under a random key
//!   (`mac-key`, 0600, made once). A plugin can create files below its target root but never read
//!   one back, so it cannot forge a MAC even where a root reached the cache;
//! - an entry is read into memory, its MAC checked, and the checked bytes are what is
//!   deserialized: nothing can change between the check and the load. An entry that fails the
//!   check is compiled again and replaced.
//!
//! The key names the component (SHA-256 of its bytes), this engine's version and wasmtime's
//! compatibility hash, so a changed plugin or engine never meets an old entry.

use crate::error::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// The largest compiled entry read back.
const MAX_ENTRY: u64 = 1 << 30;
const KEY_LEN: usize = 32;

/// `bytes` (a component) compiled by `engine`: from the cache in `dir` when a checked entry is
/// there, else compiled now and stored. `Err(Ok(message))`: it does not compile; `Err(Err(e))`: the
/// cache cannot be trusted (the run stops rather than guess).
pub fn compile(engine: &Engine, bytes: &[u8], dir: &Path) -> std::result::Result<Component, CompileError> {
    let dir = private_dir(dir).map_err(CompileError::Cache)?;
    let key = mac_key(&dir).map_err(CompileError::Cache)?;
    let name = entry_name(engine, bytes);
    if let Some(compiled) = checked_entry(&dir, &name, &key) {
        // SAFETY: these bytes were written by this engine (their MAC is under a key only this user's
        // engine reads) and wasmtime checks its compatibility with them again while loading.
        if let Ok(c) = unsafe { Component::deserialize(engine, &compiled) } {
            return Ok(c);
        }
    }
    let compiled =
        engine.precompile_component(bytes).map_err(|e| CompileError::Compile(format!("does not compile: {e:#}")))?;
    store(&dir, &name, &compiled, &key);
    // SAFETY: `compiled` was produced just now by this engine.
    unsafe { Component::deserialize(engine, &compiled) }
        .map_err(|e| CompileError::Compile(format!("does not load: {e:#}")))
}

/// Why [`compile`] gave no component.
pub enum CompileError {
    /// The plugin does not compile (its fault).
    Compile(String),
    /// The cache directory or its key cannot be trusted.
    Cache(Error),
}

fn entry_name(engine: &Engine, bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut compat);
    h.update(std::hash::Hasher::finish(&compat).to_le_bytes());
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// `dir`, created 0700 when missing; refused unless it is a directory of this user's that no one
/// else can write to.
pub fn private_dir(dir: &Path) -> Result<PathBuf> {
    let refuse = |why: String| {
        Error::resource(format!(
            "the compiled-plugin cache {} {why}; compiled plugins are native code, so it is not used",
            dir.display()
        ))
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| refuse(format!("cannot be created: {e}")))?;
    let m = fs::metadata(dir).map_err(|e| refuse(format!("cannot be read: {e}")))?;
    if !m.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me {
        return Err(refuse(format!("belongs to user {}, not to this one ({me}): set DGEN_CACHE_DIR", m.uid())));
    }
    if m.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "is writable by others (mode {:o}): chmod go-w it, or set DGEN_CACHE_DIR",
            m.mode() & 0o7777
        )));
    }
    Ok(dir.to_path_buf())
}

/// The cache's MAC key: read, or made (random, 0600) the first time. One made by another process
/// at the same moment wins, and both use it.
fn mac_key(dir: &Path) -> Result<[u8; KEY_LEN]> {
    let path = dir.join("mac-key");
    let bad = |why: String| Error::resource(format!("the compiled-plugin cache's key {} {why}", path.display()));
    for _ in 0..3 {
        match read_private(&path, KEY_LEN as u64) {
            Ok(bytes) if bytes.len() == KEY_LEN => return Ok(bytes.try_into().expect("length checked")),
            Ok(_) => return Err(bad("is damaged: remove it (the cache starts over)".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bad(e.to_string())),
        }
        let mut key = [0u8; KEY_LEN];
        getrandom(&mut key).map_err(|e| bad(format!("cannot be made: {e}")))?;
        let tmp = dir.join(format!(".mac-key.{}.tmp", std::process::id()));
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()));
        // A hard link does not replace: whoever links first made the key.
        let linked = written.and_then(|()| fs::hard_link(&tmp, &path));
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(bad(format!("cannot be made: {e}"))),
        }
    }
    Err(bad("keeps changing".into()))
}

/// A file of this user's that no one else can read or write, without following a symlink.
fn read_private(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let m = file.metadata()?;
    if !m.is_file() || m.uid() != nix::unistd::geteuid().as_raw() || m.mode() & 0o077 != 0 || m.len() > max {
        return Err(std::io::Error::other("is not a private regular file of this user's"));
    }
    let mut bytes = Vec::with_capacity(m.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: writes at most the slice's remaining length into it.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

/// The MAC of entry `name` holding `bytes`: bound to its name too, so one entry's bytes and MAC
/// copied under another's name fail.
fn mac(key: &[u8; KEY_LEN], name: &str, bytes: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(name.as_bytes());
    m.update(&[0]);
    m.update(bytes);
    m
}

/// Entry `name`'s bytes, when its MAC is right.
fn checked_entry(dir: &Path, name: &str, key: &[u8; KEY_LEN]) -> Option<Vec<u8>> {
    let tag = read_private(&dir.join(format!("{name}.mac")), 64).ok()?;
    let compiled = read_private(&dir.join(format!("{name}.cwasm")), MAX_ENTRY).ok()?;
    mac(key, name, &compiled).verify_slice(&tag).ok()?;
    Some(compiled)
}

/// Stores an entry and its MAC (each written to a temporary and renamed, 0600); a failure only
/// means the next run compiles again.
fn store(dir: &Path, name: &str, compiled: &[u8], key: &[u8; KEY_LEN]) {
    let put = |file: String, bytes: &[u8]| -> std::io::Result<()> {
        let tmp = dir.join(format!(".{file}.{}.tmp", std::process::id()));
        let r = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .and_then(|mut f| f.write_all(bytes))
            .and_then(|()| fs::rename(&tmp, dir.join(&file)));
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    };
    // The entry first, then its MAC: a reader meeting a new entry with an old MAC compiles again.
    let tag = mac(key, name, compiled).finalize().into_bytes();
    let _ = put(format!("{name}.cwasm"), compiled).and_then(|()| put(format!("{name}.mac"), &tag));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_binds_the_entry_to_the_key() {
        let dir = std::env::temp_dir().join(format!("dgen-cache-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let d = private_dir(&dir).unwrap();
        let key = mac_key(&d).unwrap();
        assert_eq!(mac_key(&d).unwrap(), key, "the key is made once");
        store(&d, "e", b"compiled", &key);
        store(&d, "f", b"other code", &key);
        assert_eq!(checked_entry(&d, "e", &key).as_deref(), Some(&b"compiled"[..]));
        fs::write(d.join("e.cwasm"), b"evil code").unwrap();
        assert!(checked_entry(&d, "e", &key).is_none(), "a changed entry fails its MAC");
        fs::copy(d.join("f.cwasm"), d.join("e.cwasm")).unwrap();
        fs::copy(d.join("f.mac"), d.join("e.mac")).unwrap();
        assert!(checked_entry(&d, "e", &key).is_none(), "another entry's bytes and MAC fail under this name");
        let other = [7u8; KEY_LEN];
        fs::write(d.join("e.cwasm"), b"evil code").unwrap();
        fs::write(d.join("e.mac"), mac(&other, "e", b"evil code").finalize().into_bytes()).unwrap();
        assert!(checked_entry(&d, "e", &key).is_none(), "a MAC under another key fails");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&d).unwrap_err().to_string();
        assert!(e.contains("writable by others"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
