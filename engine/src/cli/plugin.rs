//! `dgen-engine plugin build` and `plugin inspect`.

use super::{lib_error, Failure};
use crate::terminal::Terminal;
use std::path::Path;

/// Builds a plugin crate: the component's path on stdout, its size and hash on stderr.
pub fn build(dir: &Path, output: Option<&Path>) -> Result<(), Failure> {
    let out = dgen_engine::plugin::build::build(dir, output, false, &Terminal::plain()).map_err(lib_error)?;
    let bytes = std::fs::read(&out).map_err(|e| Failure::io(anyhow::Error::new(e)))?;
    println!("{}", out.display());
    eprintln!("built {} ({} bytes, sha256 {})", out.display(), bytes.len(), dgen_engine::plugin::sha256_hex(&bytes));
    Ok(())
}

/// A plugin's name, version, contract, SDK, hash and documented params, on stdout.
pub fn inspect(file: &Path) -> Result<(), Failure> {
    let plugin = dgen_engine::plugin::load(file, None).map_err(lib_error)?;
    let m = &plugin.meta;
    let text = |s: &str| dgen_engine::untrusted::sanitize(s, 4000);
    println!("name:     {}", text(&m.name));
    println!("version:  {}", text(&m.version));
    println!("contract: {}", text(&m.contract));
    println!("sdk:      {}", text(&m.sdk));
    println!("sha256:   {}", plugin.sha256);
    println!("params:   {}", text(&m.params));
    if let Some(keys) = &m.keys {
        let declared: Vec<String> =
            keys.iter().filter(|(k, _)| !k.is_empty()).map(|(k, t)| format!("{} ({})", text(k), text(t))).collect();
        println!("keys:     {}", declared.join(", "));
    }
    Ok(())
}
