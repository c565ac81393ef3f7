//! The plugin host: loads a workload plugin (a Wasm component, or a core module it turns into one),
//! checks who it is before running it, and runs it inside a sandbox with limits.
//!
//! - Contract: `plugin-sdk/wit/dgen.wit` (`dgen:plugin@1.2.0`; plugins built for 1.0 and 1.1 run unchanged, as
//!   wasmtime links an import of `host@1.0.0` or `@1.1.0` to our `host@1.2.0`). A plugin imports only that interface;
//!   no WASI, so no filesystem, network, clock or environment. Anything else it imports is refused at
//!   load time with the import's name.
//! - Identity: the SDK's `export_plugin!` writes a `dgen-plugin` custom section (name, version, SDK,
//!   contract, documented params). It is read before instantiation; an unknown contract is refused.
//! - Limits (wasmtime's fuel, epochs and `StoreLimits`): a fuel budget and a deadline on the plugin's
//!   own running time (epoch ticks; time blocked waiting for storage does not count) stop endless
//!   loops, a memory cap stops memory bombs (growth beyond it traps), and per-run quotas bound `write`
//!   sizes, open targets and plugin-made bytes. Quota breaches and names outside the target root trap: the run fails with the
//!   plugin named, and its open targets are aborted.
//! - Compiled components are cached on disk ([`cache`]), keyed by the SHA-256 of the component and
//!   the engine, and loaded only with a valid MAC in a directory no one else can write.
//!
//! [`host`] implements the imports; [`build`] turns a plugin crate into a component.

pub mod build;
pub mod cache;
pub mod host;
mod stage;

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

wasmtime::component::bindgen!({
    path: "plugin-sdk/wit",
    world: "plugin",
    imports: { default: trappable },
    with: { "dgen:plugin/host.target": host::Draft },
});

pub use dgen::plugin::types::{Check, ObjectStats, RunTotals};

/// The contract this host speaks.
pub const CONTRACT: &str = "dgen:plugin@1.2.0";

/// What a plugin says about itself (its `dgen-plugin` custom section).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct PluginMeta {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub sdk: String,
    pub contract: String,
    #[serde(default)]
    pub params: String,
    /// The `[params]` keys the plugin declares it takes, with their types (SDK 1.2); none when it
    /// declares none, and then any key goes to it.
    #[serde(default)]
    pub keys: Option<std::collections::BTreeMap<String, String>>,
}

/// Per-run limits of a plugin.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Linear memory cap, bytes.
    pub memory: usize,
    /// Fuel budget (≈ wasm instructions) for the whole run.
    pub fuel: u64,
    /// Wall-clock time the plugin may spend running its own code (time blocked in `wait-all` or
    /// `verify`, waiting for storage, does not count).
    pub deadline: std::time::Duration,
    /// Bytes one `write` call may carry.
    pub max_write: usize,
    /// Targets open (not yet committed or dropped) at once.
    pub max_open_targets: usize,
    /// Plugin-made bytes (headers, footers) over the run.
    pub max_plugin_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 256 << 20,
            fuel: 20_000_000_000,
            deadline: std::time::Duration::from_secs(600),
            max_write: 1 << 20,
            max_open_targets: 100_000,
            max_plugin_bytes: 1 << 30,
        }
    }
}

/// A plugin ready to run.
pub struct LoadedPlugin {
    pub meta: PluginMeta,
    /// SHA-256 of the file as given (what a workload pins).
    pub sha256: String,
    pub path: PathBuf,
    engine: Engine,
    component: Component,
}

fn engine() -> Result<Engine> {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    Engine::new(&config).map_err(|e| Error::Resource {
        message: format!("cannot start the Wasm engine: {e}"),
        source: Some(std::sync::Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(e))),
    })
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `dgen-plugin` custom section of a core module or component (searching nested modules).
pub fn read_meta(bytes: &[u8]) -> std::result::Result<Option<PluginMeta>, String> {
    if !bytes.starts_with(b"\0asm") {
        return Err("is not a WebAssembly file".into());
    }
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("is not a valid WebAssembly file: {}", one_line(&e.to_string())))?;
        if let wasmparser::Payload::CustomSection(c) = payload {
            if c.name() == "dgen-plugin" {
                let meta: PluginMeta = serde_json::from_slice(c.data())
                    .map_err(|e| format!("its dgen-plugin section is not valid JSON: {e}"))?;
                return Ok(Some(meta));
            }
        }
    }
    Ok(None)
}

/// A multi-line message on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Imports of a core module that are not the plugin contract (WASI, say).
pub(crate) fn foreign_imports(module: &[u8]) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::ImportSection(reader) = payload.map_err(|e| e.to_string())? {
            for imports in reader {
                let imports = imports.map_err(|e| e.to_string())?;
                for import in imports {
                    let (_, import) = import.map_err(|e| e.to_string())?;
                    let m = import.module;
                    let ours = m.starts_with("dgen:plugin/") || m.starts_with("[export]dgen:plugin/") || m == "$root";
                    if !ours {
                        out.push(format!("{}::{}", m, import.name));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Loads a plugin file: checks its identity and imports, makes it a component, compiles it (or takes
/// the compiled form from `cache_dir`).
pub fn load(path: &Path, cache_dir: Option<&Path>) -> Result<LoadedPlugin> {
    load_pinned(path, None, cache_dir)
}

/// The largest plugin file read.
pub const MAX_PLUGIN_FILE: u64 = 256 << 20;

/// As [`load`], refusing the file before anything else is done with it unless its SHA-256 is `pin`.
pub fn load_pinned(path: &Path, pin: Option<&str>, cache_dir: Option<&Path>) -> Result<LoadedPlugin> {
    let label = path.display().to_string();
    let bytes = crate::untrusted::read_regular(path, MAX_PLUGIN_FILE).map_err(|e| Error::io(path, e))?;
    let sha256 = sha256_hex(&bytes);
    if let Some(want) = pin.filter(|&w| w != sha256) {
        return Err(Error::plugin(
            &label,
            format!("has sha256 {sha256}, but the workload pins {want}: refusing to run a different plugin"),
        ));
    }
    let meta = read_meta(&bytes)
        .map_err(|m| Error::plugin(&label, m))?
        .ok_or_else(|| Error::plugin(&label, "has no dgen-plugin section: it was not built with dgen-plugin-sdk"))?;
    let name = format!("{} {} ({})", meta.name, meta.version, label);
    if !contract_supported(&meta.contract) {
        return Err(Error::plugin(
            &name,
            format!(
                "speaks contract {}, this dgen-engine speaks {CONTRACT}; rebuild it with a matching dgen-plugin-sdk",
                meta.contract
            ),
        ));
    }
    let component_bytes = if wasmparser::Parser::is_core_wasm(&bytes) {
        let foreign = foreign_imports(&bytes).map_err(|m| Error::plugin(&name, m))?;
        if !foreign.is_empty() {
            return Err(Error::plugin(
                &name,
                format!("imports {}; plugins get only the dgen:plugin host interface (no WASI)", foreign.join(", ")),
            ));
        }
        wit_component::ComponentEncoder::default()
            .validate(true)
            .module(&bytes)
            .and_then(|mut e| e.encode())
            .map_err(|e| Error::plugin(&name, format!("cannot be made into a component: {e:#}")))?
    } else {
        bytes
    };
    let engine = engine()?;
    let component = compile(&engine, &component_bytes, cache_dir, &name)?;
    // Refuse anything imported beyond the contract (a component built elsewhere may import WASI).
    let ty = component.component_type();
    let foreign: Vec<String> =
        ty.imports(&engine).map(|(n, _)| n.to_string()).filter(|n| !n.starts_with("dgen:plugin/")).collect();
    if !foreign.is_empty() {
        return Err(Error::plugin(
            &name,
            format!("imports {}; plugins get only the dgen:plugin host interface (no WASI)", foreign.join(", ")),
        ));
    }
    Ok(LoadedPlugin { meta, sha256, path: path.to_path_buf(), engine, component })
}

/// Whether this host runs a plugin built for `contract`: the same major version, and a minor version
/// no newer than ours (a newer one may import calls this host does not have).
fn contract_supported(contract: &str) -> bool {
    let version = |c: &str| -> Option<(u64, u64)> {
        let v = c.strip_prefix("dgen:plugin@")?;
        let mut parts = v.split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    match (version(contract), version(CONTRACT)) {
        (Some((major, minor)), Some((our_major, our_minor))) => major == our_major && minor <= our_minor,
        _ => false,
    }
}

fn compile(engine: &Engine, bytes: &[u8], cache_dir: Option<&Path>, name: &str) -> Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, bytes).map_err(|e| Error::plugin(name, format!("does not compile: {e:#}")));
    };
    cache::compile(engine, bytes, dir).map_err(|e| match e {
        cache::CompileError::Compile(m) => Error::plugin(name, m),
        cache::CompileError::Cache(e) => e,
    })
}

impl LoadedPlugin {
    /// "name version (path)", for messages.
    pub fn label(&self) -> String {
        format!("{} {}", self.meta.name, self.meta.version)
    }

    /// Runs the plugin's `run` export with `state` as the host; returns its report or the fault.
    pub fn run(
        &self,
        state: host::HostState,
        config: RunConfig,
    ) -> (host::HostState, Result<std::result::Result<Report, String>>) {
        let fuel = state.limits.fuel;
        let deadline = state.limits.deadline;
        let mut store = Store::new(&self.engine, state);
        // Linear memory, tables and what the host holds for the plugin share one budget.
        store.limiter(|s| &mut s.budget);
        // The epoch ticks every TICK; at each tick Ctrl-C stops the plugin, and its own running time
        // (wall time minus time blocked waiting for storage) is held against its deadline.
        const TICK: std::time::Duration = std::time::Duration::from_millis(50);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if ctx.data().cancelled() {
                ctx.data_mut().interrupted = true;
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            if ctx.data().own_time() > deadline {
                ctx.data_mut().deadline_hit = true;
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            Ok(wasmtime::UpdateDeadline::Continue(1))
        });
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let (engine, stop) = (self.engine.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
        };
        let label = self.label();
        store.data_mut().clock = std::time::Instant::now();
        let result = (|| -> Result<std::result::Result<Report, String>> {
            store.set_fuel(fuel).map_err(|e| Error::plugin(&label, format!("{e}")))?;
            let mut linker = Linker::<host::HostState>::new(&self.engine);
            Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
                .and_then(|()| host::add_guarded_calls(&mut linker))
                .map_err(|e| Error::plugin(&label, format!("{e:#}")))?;
            let instance = linker
                .instantiate(&mut store, &self.component)
                .map_err(|e| fault(&label, e, store.data(), "cannot be instantiated: "))?;
            let r = call_run(&mut store, &instance, config).map_err(|e| fault(&label, e, store.data(), ""))?;
            // What the plugin returns is its own text: keep it to a size a report can show.
            Ok(r.map_err(|m| crate::untrusted::sanitize(&m, host::MAX_LOG_LINE)))
        })();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = ticker.join();
        let mut state = store.into_data();
        state.abort_open_targets();
        (state, result)
    }
}

/// `run-config` as contract 1.0 has it (without `rank` and `world-size`).
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower)]
#[component(record)]
struct RunConfig10 {
    seed: u64,
    params: String,
    #[component(name = "verify-only")]
    verify_only: bool,
}

/// Calls the plugin's `run` with the `run-config` its contract has: a 1.1 plugin's record carries
/// the rank and the world size; a 1.0 plugin's does not, so it is handed the fields it knows.
fn call_run(
    store: &mut Store<host::HostState>,
    instance: &wasmtime::component::Instance,
    config: RunConfig,
) -> wasmtime::Result<std::result::Result<Report, String>> {
    type Out = (std::result::Result<Report, String>,);
    if let Ok(run) = instance.get_typed_func::<(RunConfig,), Out>(&mut *store, "run") {
        return Ok(run.call(&mut *store, (config,))?.0);
    }
    let run = instance.get_typed_func::<(RunConfig10,), Out>(&mut *store, "run")?;
    let old = RunConfig10 { seed: config.seed, params: config.params, verify_only: config.verify_only };
    Ok(run.call(&mut *store, (old,))?.0)
}

/// Turns a trap into a one-line message a user can act on; the full error (with its Wasm backtrace)
/// is kept as the detail.
fn fault(label: &str, e: wasmtime::Error, state: &host::HostState, prefix: &str) -> Error {
    let own = e.downcast_ref::<host::HostTrap>();
    if state.interrupted || matches!(own, Some(host::HostTrap::Interrupted)) {
        return Error::Cancelled;
    }
    let deadline = || {
        format!(
            "ran past its deadline of {} s of its own running time; raise [limits] deadline",
            state.limits.deadline.as_secs_f64()
        )
    };
    let message = if let Some(host::HostTrap::Violation(m) | host::HostTrap::Memory(m)) = own {
        m.clone()
    } else if let Some(m) = &state.violation {
        m.clone()
    } else if let Some(m) = &state.budget.refused {
        m.clone()
    } else if state.deadline_hit || matches!(own, Some(host::HostTrap::Deadline)) {
        deadline()
    } else if let Some(m) = &state.panic_message {
        format!("panicked: {m}")
    } else {
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::OutOfFuel) => {
                format!("ran out of fuel ({} units): an endless loop, or raise [limits] fuel", state.limits.fuel)
            }
            Some(wasmtime::Trap::UnreachableCodeReached) => "trapped (unreachable code executed: an abort)".to_string(),
            Some(t) => format!("trapped: {t}"),
            None => {
                let text = one_line(&e.root_cause().to_string());
                format!("failed: {}", crate::untrusted::sanitize(&text, 300))
            }
        }
    };
    Error::Plugin { plugin: label.to_string(), message: format!("{prefix}{message}"), detail: Some(format!("{e:#}")) }
}
