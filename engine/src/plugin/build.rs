//! Building a plugin crate into a `.wasm` component: `cargo build --target wasm32-unknown-unknown`,
//! then `wit-component` wraps the core module as a component (no WASI adapter: plugins import none).
//!
//! Toolchain: the rustup-installed `wasm32-unknown-unknown` target when present (what users have after
//! `rustup target add wasm32-unknown-unknown`); otherwise Debian's rustc with its standard-library
//! source (`rustc-web`, `rust-web-src`, `lld-19`) and `-Z build-std`, which works offline. Without
//! either, the error says how to get one. Plugin builds share one target directory under the cache,
//! so their common dependencies compile once.

use crate::error::{Error, Result};
use crate::events::{Event, Events};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-unknown-unknown";

/// Where dgen-engine keeps caches: `$DGEN_CACHE_DIR`, else `$XDG_CACHE_HOME/dgen-engine`, else
/// `~/.cache/dgen-engine`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DGEN_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("dgen-engine");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("dgen-engine")
}

/// How to invoke cargo for wasm32.
enum Toolchain {
    Rustup,
    DebianBuildStd { linker: String },
}

fn rustup_target_installed() -> bool {
    let out = Command::new("rustc").args(["--print", "target-libdir", "--target", TARGET]).output();
    let Ok(out) = out else { return false };
    if !out.status.success() {
        return false;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
        .unwrap_or(false)
}

fn debian_toolchain() -> Option<Toolchain> {
    let rustc = Path::new("/usr/bin/rustc");
    let cargo = Path::new("/usr/bin/cargo");
    if !rustc.exists() || !cargo.exists() {
        return None;
    }
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().ok()?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot.join("lib/rustlib/src/rust/library/std").exists() {
        return None;
    }
    let linker = ["wasm-ld-19", "wasm-ld", "rust-lld"].into_iter().find(|l| {
        Command::new("sh").args(["-c", &format!("command -v {l}")]).output().is_ok_and(|o| o.status.success())
    })?;
    Some(Toolchain::DebianBuildStd { linker: linker.to_string() })
}

fn toolchain(events: &dyn Events) -> Result<Toolchain> {
    if rustup_target_installed() {
        return Ok(Toolchain::Rustup);
    }
    // With rustup, the target is one command away: add it (once) rather than fail.
    let has_rustup = Command::new("rustup").arg("--version").output().is_ok_and(|o| o.status.success());
    if has_rustup {
        events.emit(Event::Note(format!("installing the {TARGET} target with rustup (plugins are built for it)")));
        let added = Command::new("rustup").args(["target", "add", TARGET]).status().is_ok_and(|s| s.success());
        if added && rustup_target_installed() {
            return Ok(Toolchain::Rustup);
        }
    }
    debian_toolchain().ok_or_else(|| {
        Error::resource(
            "cannot build plugins: the wasm32-unknown-unknown target is missing: run `rustup target add wasm32-unknown-unknown` \
             (offline on Debian: `apt-get install rustc-web cargo-web rust-web-src lld-19`)"
                ,
        )
    })
}

/// Builds the plugin crate in `dir`; writes the component to `out` (default: `DIR/target/NAME.wasm`)
/// and returns its path. Cargo's own output goes to stderr unless `quiet`.
pub fn build(dir: &Path, out: Option<&Path>, quiet: bool, events: &dyn Events) -> Result<PathBuf> {
    if !dir.join("Cargo.toml").is_file() {
        return Err(Error::Workload {
            at: dir.display().to_string(),
            message: "is not a plugin crate (no Cargo.toml)".into(),
        });
    }
    // Built from a staged copy where path dependencies lie inside the crate, with the machine's
    // paths remapped: the same source gives the same bytes in any directory (see `stage`).
    let canonical = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let tag = canonical.file_name().map_or("plugin".into(), |n| n.to_string_lossy().into_owned());
    let key = format!("{tag}-{}", &super::sha256_hex(canonical.as_os_str().as_encoded_bytes())[..16]);
    let stage_root = cache_dir().join("plugin-stage").join(&key);
    // One build of a crate at a time on this host (tests in parallel, ranks of a launch on one
    // node): staging rewrites files in place that a build running beside it would be reading.
    let lock_path = cache_dir().join("plugin-stage").join(format!("{key}.lock"));
    std::fs::create_dir_all(cache_dir().join("plugin-stage")).map_err(|e| Error::io(&lock_path, e))?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    let _one_build = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io(&lock_path, std::io::Error::from(e)))?;
    // A target directory per crate: the remapped stage path is in each crate's rustflags, and cargo
    // rebuilds every dependency in a shared directory whenever the rustflags change, so crates
    // built one after another would rebuild each other's dependencies each time.
    let target_dir = cache_dir().join("plugin-target").join(&key);
    let staged = super::stage::stage(dir, &stage_root)?;
    let manifest = staged.join("Cargo.toml");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut remaps = vec![format!("--remap-path-prefix={}=/dgen-plugin", staged.display())];
    if let Some(home) = cargo_home {
        remaps.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    remaps.push(format!("--remap-path-prefix={}=/target", target_dir.display()));
    let mut cmd = match toolchain(events)? {
        Toolchain::Rustup => {
            let mut c = Command::new("cargo");
            c.args(["build", "--release", "--target", TARGET]);
            c
        }
        Toolchain::DebianBuildStd { linker } => {
            let mut c = Command::new("/usr/bin/cargo");
            c.args(["build", "--release", "-Z", "build-std=std,panic_abort", "--target", TARGET])
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", linker);
            c
        }
    };
    cmd.arg("--manifest-path")
        .arg(&manifest)
        .args(["--message-format", "json-render-diagnostics"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", remaps.join("\u{1f}"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdout(Stdio::piped())
        .stderr(if quiet { Stdio::piped() } else { Stdio::inherit() });
    let output = cmd.output().map_err(|e| Error::resource_from("cannot build plugins: cannot run cargo", e))?;
    if !output.status.success() {
        let detail = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = detail.lines().filter(|l| l.contains("error")).take(3).collect();
        return Err(Error::Build {
            dir: dir.to_path_buf(),
            message: format!(
                "cargo build failed{}",
                if last.is_empty() { String::new() } else { format!(": {}", last.join("; ")) }
            ),
        });
    }
    // The .wasm artifact, from cargo's JSON messages.
    let mut module = None;
    let mut crate_name = String::from("plugin");
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(files) = v["filenames"].as_array() {
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(".wasm") {
                    module = Some(PathBuf::from(f));
                    crate_name = v["target"]["name"].as_str().unwrap_or("plugin").replace('-', "_");
                }
            }
        }
    }
    let module = module.ok_or_else(|| Error::Build {
        dir: dir.to_path_buf(),
        message: "cargo made no .wasm file: is the crate a `cdylib`?".into(),
    })?;
    let bytes = std::fs::read(&module).map_err(|e| Error::io(&module, e))?;
    let label = dir.display().to_string();
    let foreign = super::foreign_imports(&bytes).map_err(|m| Error::plugin(&label, m))?;
    if !foreign.is_empty() {
        return Err(Error::plugin(
            &label,
            format!("imports {}; plugins get only the dgen:plugin host interface (no WASI)", foreign.join(", ")),
        ));
    }
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&bytes)
        .and_then(|mut e| e.encode())
        .map_err(|e| Error::plugin(dir.display().to_string(), format!("cannot be made into a component: {e:#}")))?;
    let out = match out {
        Some(o) => o.to_path_buf(),
        None => dir.join("target").join(format!("{crate_name}.wasm")),
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    // Written beside and renamed into place: two runs building the same crate at once (tests, a
    // scale-out launch on one host) never load the other's half-written file.
    let tmp = out.with_extension(format!("wasm.{}.tmp", std::process::id()));
    std::fs::write(&tmp, component).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(&out, e)
    })?;
    Ok(out)
}
