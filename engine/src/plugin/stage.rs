//! Reproducible plugin builds: the same source gives the same `.wasm`, byte for byte, wherever it
//! is checked out, so a team can check a shared plugin against its source.
//!
//! Two things of the build machine reach a Wasm module otherwise. Paths: rustc embeds source paths
//! (panic locations), absolute for crates from the registry; they are remapped (`/cargo/…`,
//! `/dgen-plugin/…`). And cargo's crate hashes: a path dependency outside the crate's workspace
//! (the SDK at `../../plugin-sdk`) is hashed by its absolute path, and that hash reorders the
//! generated code. So the crate is built from a staged copy in which every path dependency lies
//! inside the crate's own directory (`.dgen-deps/NAME`), with the manifests' `path`s rewritten to
//! match: cargo then hashes them by their path relative to the crate. The copy is kept between
//! builds and only changed files are rewritten, so cargo's incremental builds still work.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Where path dependencies go in the staged crate.
const DEPS: &str = ".dgen-deps";

/// Stages the crate in `dir` (and its path dependencies) under `root`; returns the staged crate's
/// directory.
pub fn stage(dir: &Path, root: &Path) -> Result<PathBuf> {
    let dir = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let bad = |m: String| Error::Build { dir: dir.clone(), message: m };
    // The crate and every path dependency reachable from it: canonical dir → staged dir.
    let mut staged: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    staged.insert(dir.clone(), root.to_path_buf());
    let mut todo = vec![dir.clone()];
    while let Some(d) = todo.pop() {
        for dep in path_deps(&read_manifest(&d)?, &d) {
            let dep = fs::canonicalize(&dep).map_err(|e| Error::io(&dep, e))?;
            if staged.contains_key(&dep) {
                continue;
            }
            let name = package_name(&read_manifest(&dep)?)
                .ok_or_else(|| bad(format!("path dependency {} has no [package] name", dep.display())))?;
            staged.insert(dep.clone(), root.join(DEPS).join(name));
            todo.push(dep);
        }
    }
    for (from, to) in &staged {
        sync_dir(from, to, true)?;
        let mut manifest = read_manifest(from)?;
        rewrite_paths(&mut manifest, from, to, &staged);
        if from != &dir {
            // A dependency is built as a member of the staged crate's workspace.
            manifest.remove("workspace");
        }
        let text = toml::to_string(&manifest).map_err(|e| bad(format!("cannot write a staged manifest: {e}")))?;
        write_if_changed(&to.join("Cargo.toml"), text.as_bytes())?;
    }
    Ok(root.to_path_buf())
}

fn read_manifest(dir: &Path) -> Result<toml::Table> {
    let path = dir.join("Cargo.toml");
    let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    toml::from_str(&text).map_err(|e| Error::Build { dir: dir.to_path_buf(), message: format!("Cargo.toml: {e}") })
}

fn package_name(m: &toml::Table) -> Option<String> {
    m.get("package")?.get("name")?.as_str().map(str::to_string)
}

/// The dependency tables of a manifest, target-specific ones included.
fn dep_tables(m: &mut toml::Table) -> Vec<&mut toml::Table> {
    const KINDS: [&str; 3] = ["dependencies", "dev-dependencies", "build-dependencies"];
    let mut out = Vec::new();
    let mut targets = None;
    for (k, v) in m.iter_mut() {
        if KINDS.contains(&k.as_str()) {
            if let Some(t) = v.as_table_mut() {
                out.push(t);
            }
        } else if k == "target" {
            targets = v.as_table_mut();
        }
    }
    if let Some(targets) = targets {
        for (_, t) in targets.iter_mut() {
            if let Some(t) = t.as_table_mut() {
                for (k, v) in t.iter_mut() {
                    if KINDS.contains(&k.as_str()) {
                        if let Some(t) = v.as_table_mut() {
                            out.push(t);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The directories of a manifest's path dependencies (relative ones resolved against `dir`).
fn path_deps(m: &toml::Table, dir: &Path) -> Vec<PathBuf> {
    let mut m = m.clone();
    dep_tables(&mut m)
        .into_iter()
        .flat_map(|t| t.values().filter_map(|d| d.get("path")?.as_str().map(|p| dir.join(p))).collect::<Vec<_>>())
        .collect()
}

/// Points each path dependency of the manifest of `from` (staged at `to`) at its staged copy.
fn rewrite_paths(m: &mut toml::Table, from: &Path, to: &Path, staged: &BTreeMap<PathBuf, PathBuf>) {
    for t in dep_tables(m) {
        for (_, d) in t.iter_mut() {
            let Some(p) = d.get("path").and_then(|p| p.as_str()).map(|p| from.join(p)) else { continue };
            let Ok(p) = fs::canonicalize(&p) else { continue };
            if let (Some(target), Some(table)) = (staged.get(&p), d.as_table_mut()) {
                table.insert("path".into(), toml::Value::String(relative(to, target)));
            }
        }
    }
}

/// `target` relative to `base` (both below one staging root).
fn relative(base: &Path, target: &Path) -> String {
    let b: Vec<Component> = base.components().collect();
    let t: Vec<Component> = target.components().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".into(); b.len() - common];
    parts.extend(t[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// Makes `to` hold what `from` holds (but `target/`, `.git/`, the staged dependencies and, at the
/// top, the manifest, which the caller writes rewritten), rewriting only files whose bytes differ
/// and removing what `from` no longer has.
fn sync_dir(from: &Path, to: &Path, top: bool) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    let mut keep = std::collections::HashSet::new();
    for e in fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let e = e.map_err(|e| Error::io(from, e))?;
        let name = e.file_name();
        let src = e.path();
        if name == "target" || name == ".git" || name == DEPS || (top && name == "Cargo.toml") {
            continue;
        }
        keep.insert(name.clone());
        let dst = to.join(&name);
        let kind = e.file_type().map_err(|err| Error::io(&src, err))?;
        if kind.is_dir() {
            sync_dir(&src, &dst, false)?;
        } else if kind.is_file() {
            let bytes = fs::read(&src).map_err(|e| Error::io(&src, e))?;
            write_if_changed(&dst, &bytes)?;
        }
    }
    for e in fs::read_dir(to).map_err(|e| Error::io(to, e))?.flatten() {
        let name = e.file_name();
        let ours = top && (name == "Cargo.toml" || name == "target" || name == DEPS);
        if !keep.contains(&name) && !ours {
            let p = e.path();
            let _ = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
        }
    }
    Ok(())
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_between_staged_dirs() {
        let r = Path::new("/s/crate");
        assert_eq!(relative(r, &r.join(".dgen-deps/sdk")), ".dgen-deps/sdk");
        assert_eq!(relative(&r.join(".dgen-deps/a"), &r.join(".dgen-deps/b")), "../b");
        assert_eq!(relative(&r.join(".dgen-deps/a"), r), "../..");
    }
}
