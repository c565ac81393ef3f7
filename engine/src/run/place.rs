//! Where a run happens: the guard on a file target's root (it must not hold what the run depends
//! on) and the facts of the node and target a plugin may ask for, taken once the target is open.

use crate::error::{Error, Result};
use crate::plugin::build;
use crate::plugin::host::HostFacts;
use crate::plugin::LoadedPlugin;
use crate::run::workload::{Plan, PluginSource};
use std::path::Path;

/// Refuses a file target whose root holds what the run itself depends on — the compiled-plugin
/// cache, the workload file, the plugin — since the plugin may write and delete below its root.
pub(crate) fn guard_root(plan: &Plan, plugin: &LoadedPlugin) -> Result<()> {
    let crate::sink::Target::File(t) = &plan.target else { return Ok(()) };
    let Ok(root) = std::fs::canonicalize(&t.root) else { return Ok(()) };
    let mut guarded = vec![("the compiled-plugin cache", build::cache_dir()), ("the plugin", plugin.path.clone())];
    if let PluginSource::Crate(dir) = &plan.plugin {
        guarded.push(("the plugin crate", dir.clone()));
    }
    guarded.push(("the workload file", plan.file.clone()));
    for (what, path) in guarded {
        // What does not exist yet is judged by its nearest existing ancestor.
        let mut p = path.as_path();
        let real = loop {
            if let Ok(r) = std::fs::canonicalize(p) {
                break Some(r.join(path.strip_prefix(p).unwrap_or(Path::new(""))));
            }
            match p.parent() {
                Some(up) if !up.as_os_str().is_empty() => p = up,
                _ => break None,
            }
        };
        if real.is_some_and(|r| r.starts_with(&root)) {
            return Err(Error::InvalidValue {
                key: "target.uri",
                value: plan.uri.clone(),
                reason: format!(
                    "its root {} contains {what} ({}): a plugin may write and delete below its root; choose a \
                     directory of its own",
                    root.display(),
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

/// What the plugin's `facts` tell of this node and the target, taken once the target is open (its
/// root exists).
pub(crate) fn facts(target: &crate::sink::Target, world: &crate::world::World, results: Option<&Path>) -> HostFacts {
    use std::os::unix::fs::MetadataExt;
    let node_memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024);
    let (page_cache, cache_drop, results_elsewhere) = match target {
        crate::sink::Target::File(t) => {
            let dev = |p: &Path| std::fs::metadata(p).ok().map(|m| m.dev());
            // The report's directory (it is written at the end; a bare name is the working one).
            let results_dir = results.map(|r| match r.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            });
            let elsewhere = match (results_dir.as_deref().and_then(dev), dev(&t.root)) {
                (Some(a), Some(b)) => Some(a != b),
                _ => None,
            };
            (!t.options.direct, t.options.cache == crate::sink::CacheMode::Drop, elsewhere)
        }
        _ => (false, false, None),
    };
    HostFacts { node_memory, node_ranks: world.node_ranks(), page_cache, cache_drop, results_elsewhere }
}
