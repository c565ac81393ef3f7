//! The dgen-engine plugin SDK: script what a workload writes and what counts as a pass.
//!
//! A plugin is a small Rust crate built to a WebAssembly component. It opens [`Target`]s (files or
//! objects below the workload's target root), describes their bytes — plugin-made headers with
//! [`Target::write`], synthetic payload with [`Target::fill`] (generated natively by the host, never
//! copied into the plugin), host-computed checksums with [`Target::field`] — and commits them; the host
//! writes many objects at once while the plugin goes on planning. At the end it returns a [`Report`] of
//! checks. See README.md for a walk-through.
//!
//! ```ignore
//! use dgen_plugin_sdk::{export_plugin, Config, Plugin, Report, Target};
//!
//! struct Hello;
//! impl Plugin for Hello {
//!     fn run(config: &Config) -> Result<Report, String> {
//!         let mut t = Target::open("hello.bin")?;
//!         t.write(b"HELO")?;
//!         t.fill(1 << 20)?;
//!         t.commit()?;
//!         let done = dgen_plugin_sdk::wait_all()?;
//!         Ok(Report::new().check_eq("objects", done.len() as f64, 1.0))
//!     }
//! }
//! export_plugin!(Hello, name = "hello", version = "0.1.0", params = "none");
//! ```

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "dgen_plugin_sdk::bindings",
    });
}

use bindings::dgen::plugin::host;
use bindings::dgen::plugin::types as wit;
pub use bindings::dgen::plugin::types::{
    DataProfile, DataProfileExt, DedupCopies, FieldKind, JobResult, Listing, LogLevel, NodeFacts as Facts, ObjectStats,
    OpFigures, ReadCheck, ReadStats, RegionCheck, RunTotals as Totals,
};

/// The contract this SDK speaks (the WIT package).
pub const CONTRACT: &str = "dgen:plugin@1.2.0";
/// This SDK's version.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The most bytes one `write` call may carry; [`Target::write`] splits larger slices.
pub const MAX_WRITE: usize = 1 << 20;

/// Errors are strings: they end up in the user's terminal, naming what went wrong.
pub type Result<T, E = String> = std::result::Result<T, E>;

/// What the run hands the plugin.
#[derive(Clone, Debug)]
pub struct Config {
    /// The run seed.
    pub seed: u64,
    /// True under `dgen-engine verify`: commits are compared with storage instead of written.
    pub verify_only: bool,
    /// This host's rank in a scale-out run (0 alone), and how many hosts run the workload (1 alone).
    pub rank: u32,
    pub world_size: u32,
    params: String,
}

impl Config {
    /// The workload's `[params]` table, deserialised into your own type.
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.params).map_err(|e| format!("bad [params]: {e}"))
    }

    /// The raw `[params]` JSON.
    pub fn params_json(&self) -> &str {
        &self.params
    }
}

/// An object being described. Drop it without [`Target::commit`] and nothing is written.
pub struct Target(host::Target);

/// A region set aside by [`Target::reserve`], to be filled by [`Target::patch`].
#[derive(Clone, Copy, Debug)]
pub struct Region(u32);

impl Target {
    /// Opens `name` (relative to the workload's target root).
    pub fn open(name: &str) -> Result<Target> {
        host::open(name, None).map(Target)
    }

    /// Opens `name`, telling the host how large it will be (lets object stores pick part sizes).
    pub fn open_sized(name: &str, size: u64) -> Result<Target> {
        host::open(name, Some(size)).map(Target)
    }

    /// Appends plugin-made bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        for chunk in bytes.chunks(MAX_WRITE) {
            self.0.write(chunk)?;
        }
        Ok(())
    }

    /// Appends `len` synthetic bytes in the run's data profile.
    pub fn fill(&mut self, len: u64) -> Result<()> {
        self.0.fill(len, None)
    }

    /// Appends `len` synthetic bytes with their own dedup and compress ratios.
    pub fn fill_with(&mut self, len: u64, dedup: f64, compress: f64) -> Result<()> {
        self.0.fill(len, Some(DataProfile { dedup, compress }))
    }

    /// Appends `len` synthetic bytes with a profile of their own that may also have a dedup extent,
    /// a compressibility mix and a duplicate-count distribution, as a workload's `[data]` has
    /// (see [`DataProfileExt`]; [`profile`] builds one from the same keys).
    pub fn fill_profile(&mut self, len: u64, profile: &DataProfileExt) -> Result<()> {
        self.0.fill_ext(len, profile)
    }

    /// Appends a host-computed value over the bytes so far (a CRC32C footer, a length).
    pub fn field(&mut self, kind: FieldKind) -> Result<()> {
        self.0.write_field(kind)
    }

    /// Appends `len` placeholder bytes to be patched before commit.
    pub fn reserve(&mut self, len: u32) -> Result<Region> {
        self.0.reserve(len).map(Region)
    }

    /// Fills a reserved region with exactly its length of bytes.
    pub fn patch(&mut self, region: Region, bytes: &[u8]) -> Result<()> {
        self.0.patch(region.0, bytes)
    }

    /// Bytes described so far.
    pub fn size(&self) -> u64 {
        self.0.size()
    }

    /// Hands the object to the host; returns at once.
    pub fn commit(self) -> Result<()> {
        self.0.commit()
    }

    /// Writes nothing: says the object is already on storage as described (an earlier run with the
    /// same seed and the same descriptions wrote it), so [`read`]s of it can be checked.
    pub fn declare(self) -> Result<()> {
        self.0.declare()
    }
}

/// Starts reading all of `name` and returns at once; [`wait_reads`] collects the results.
pub fn read(name: &str, check: ReadCheck) -> Result<()> {
    host::read(name, 0, None, check)
}

/// Starts reading `len` bytes of `name` from `offset`; returns at once.
pub fn read_range(name: &str, offset: u64, len: u64, check: ReadCheck) -> Result<()> {
    host::read(name, offset, Some(len), check)
}

/// Waits for every read issued; returns those finished since the last call, in the order issued.
pub fn wait_reads() -> Result<Vec<ReadStats>> {
    host::wait_reads()
}

/// The size of `name` on storage, or `None` when there is no such object.
pub fn stat(name: &str) -> Result<Option<u64>> {
    host::stat(name)
}

/// How many objects have names starting with `prefix`, and their total size.
pub fn list(prefix: &str) -> Result<Listing> {
    host::list(prefix)
}

/// Removes `name` from storage.
pub fn delete(name: &str) -> Result<()> {
    host::delete(name)
}

/// Starts a named phase (`"save"`, `"restore"`): the report shows each phase's figures.
pub fn phase(name: &str) {
    host::phase(name)
}

/// The current phase's bytes (written and read), operations and seconds so far.
pub fn phase_totals() -> Totals {
    host::phase_totals()
}

/// Waits `seconds` (think time between phases); not counted against the plugin's deadline.
pub fn pause(seconds: f64) {
    host::pause(seconds)
}

/// Waits until every rank of the run has called it (alone, returns at once). Phases already start
/// at one; this is for a plugin's own synchronisation points.
pub fn barrier() {
    host::barrier()
}

/// [`totals`] (or, with `phase`, [`phase_totals`]) summed over all ranks, seconds the longest
/// rank's. Every rank must call it at the same point (it waits for them all); alone, the own.
pub fn world_totals(phase: bool) -> Totals {
    host::world_totals(phase)
}

/// Objects and reads the stonewall cut short so far (a workload's `stonewall = true` under MPI: the
/// first rank to finish its share ends the stretch for the others). Cut objects are not among those
/// [`wait_all`] returns; a plugin that checks its counts takes them off what it expected. 0 without
/// stonewalling.
pub fn stonewalled() -> u64 {
    host::stonewalled()
}

/// What the host can tell of this node and the target, for a benchmark's rules: the node's memory
/// and ranks, whether reads can come from its page cache (and what share of the current phase's
/// did), and whether the report goes to another file system than the data.
pub fn facts() -> Facts {
    host::facts()
}

/// Runs a job — a whole stream of operations in place on a region (random and mixed reads and
/// writes for a duration, at a depth) — natively in the host, and returns its figures when it is
/// done (contract 1.2). `spec` is a JSON object; its keys are in the engine's `docs/operations.md`
/// (`object`, `size`, `mix`, `pattern`, `depth`, `duration`, `verify` …). The error names the key
/// at fault.
pub fn job(spec: &serde_json::Value) -> Result<JobResult> {
    host::job(&spec.to_string())
}

impl JobResult {
    /// One operation kind's figures ("read", "write", "trim", "fsync"), if it ran.
    pub fn op(&self, name: &str) -> Option<&OpFigures> {
        self.ops.iter().find(|o| o.op == name)
    }

    /// Operations per second over all kinds.
    pub fn iops(&self) -> f64 {
        self.ops.iter().map(|o| o.iops).sum()
    }
}

/// Waits for every committed object to be durable; returns those finished since the last call.
pub fn wait_all() -> Result<Vec<ObjectStats>> {
    host::wait_all()
}

/// Re-reads a finished object and compares it with what was meant to be written; returns the bytes
/// compared.
pub fn verify(name: &str) -> Result<u64> {
    host::verify(name)
}

/// Records a named number in the run's report.
pub fn metric(name: &str, value: f64) {
    host::metric(name, value)
}

/// Declares what the run will write in all, so the user's progress line shows a total, a percentage
/// and an ETA. Call it before the first commit (again to revise); it changes nothing that is written.
/// Needs a host speaking contract 1.1 or later.
pub fn expect(bytes: u64, objects: u64) {
    host::expect(bytes, objects)
}

/// Bytes and objects written so far, and seconds since the start.
pub fn totals() -> Totals {
    host::totals()
}

#[doc(hidden)]
pub fn __log(level: LogLevel, message: &str) {
    host::log(level, message)
}

/// Logs a line through the host: `log!("wrote {} shards", n)`; `log!(warn, "…")` for other levels.
#[macro_export]
macro_rules! log {
    (debug, $($t:tt)*) => { $crate::__log($crate::LogLevel::Debug, &format!($($t)*)) };
    (warn, $($t:tt)*) => { $crate::__log($crate::LogLevel::Warn, &format!($($t)*)) };
    (error, $($t:tt)*) => { $crate::__log($crate::LogLevel::Error, &format!($($t)*)) };
    ($($t:tt)*) => { $crate::__log($crate::LogLevel::Info, &format!($($t)*)) };
}

/// The pass/fail verdicts of a run, with a one-line summary.
#[derive(Clone, Debug, Default)]
pub struct Report {
    checks: Vec<wit::Check>,
    summary: String,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    fn push(mut self, name: &str, observed: f64, threshold: f64, op: &str, passed: bool) -> Report {
        self.checks.push(wit::Check { name: name.into(), observed, threshold, op: op.into(), passed });
        self
    }

    /// Passes when `observed >= threshold`.
    pub fn check_ge(self, name: &str, observed: f64, threshold: f64) -> Report {
        self.push(name, observed, threshold, ">=", observed >= threshold)
    }

    /// Passes when `observed <= threshold`.
    pub fn check_le(self, name: &str, observed: f64, threshold: f64) -> Report {
        self.push(name, observed, threshold, "<=", observed <= threshold)
    }

    /// Passes when `observed == threshold`.
    pub fn check_eq(self, name: &str, observed: f64, threshold: f64) -> Report {
        self.push(name, observed, threshold, "==", observed == threshold)
    }

    /// A yes/no check.
    pub fn check(self, name: &str, passed: bool) -> Report {
        let v = if passed { 1.0 } else { 0.0 };
        self.push(name, v, 1.0, "==", passed)
    }

    pub fn summary(mut self, text: impl Into<String>) -> Report {
        self.summary = text.into();
        self
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Implement this and call [`export_plugin!`].
pub trait Plugin {
    fn run(config: &Config) -> Result<Report>;
}

#[doc(hidden)]
pub fn __run<P: Plugin>(config: wit::RunConfig) -> Result<wit::Report> {
    std::panic::set_hook(Box::new(|info| host::report_panic(&info.to_string())));
    let config = Config {
        seed: config.seed,
        verify_only: config.verify_only,
        rank: config.rank,
        world_size: config.world_size,
        params: config.params,
    };
    P::run(&config).map(|r| wit::Report { checks: r.checks, summary: r.summary })
}

#[doc(hidden)]
pub const fn __meta<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = b[i];
        i += 1;
    }
    out
}

/// Exports a [`Plugin`] and records its metadata (name, version, documented params) in a custom
/// section the host reads before running it. Strings go into JSON as written: avoid `"` and `\`.
///
/// `keys = { name: "type", … }` declares the `[params]` keys the plugin takes, so the engine refuses
/// an unknown or mistyped one (exit 2, naming the workload's line) before anything runs. A type is
/// `"integer"`, `"number"`, `"boolean"`, `"string"`, `"size"` (bytes, or a string such as
/// `"4MiB"`), `"list"`, `"table"`, `"any"`, or the accepted strings joined by `|` (`"none|crc|verify"`).
///
/// ```ignore
/// export_plugin!(Ckpt, name = "ckpt", version = "0.3.0", params = "ranks (4), verify (true)",
///                keys = { ranks: "integer", verify: "boolean" });
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty, name = $name:literal, version = $version:literal, params = $params:literal,
     keys = { $($key:ident : $kind:literal),* $(,)? } $(,)?) => {
        $crate::export_plugin!(@meta $ty, concat!(
            "{\"name\":\"", $name,
            "\",\"version\":\"", $version,
            "\",\"sdk\":\"1.3.0\",\"contract\":\"dgen:plugin@1.2.0\",\"params\":\"", $params,
            // The last entry closes the list (an empty name the host ignores).
            "\",\"keys\":{", $("\"", stringify!($key), "\":\"", $kind, "\",",)* "\"\":\"\"}}"
        ));
    };
    ($ty:ty, name = $name:literal, version = $version:literal, params = $params:literal $(,)?) => {
        $crate::export_plugin!(@meta $ty, concat!(
            "{\"name\":\"", $name,
            "\",\"version\":\"", $version,
            "\",\"sdk\":\"1.3.0\",\"contract\":\"dgen:plugin@1.2.0\",\"params\":\"", $params, "\"}"
        ));
    };
    (@meta $ty:ty, $meta:expr) => {
        const __DGEN_META_STR: &str = $meta;
        #[used]
        #[unsafe(link_section = "dgen-plugin")]
        static __DGEN_META: [u8; __DGEN_META_STR.len()] = $crate::__meta::<{ __DGEN_META_STR.len() }>(__DGEN_META_STR);

        struct __DgenGuest;
        impl $crate::bindings::Guest for __DgenGuest {
            fn run(
                config: $crate::bindings::dgen::plugin::types::RunConfig,
            ) -> ::std::result::Result<$crate::bindings::dgen::plugin::types::Report, ::std::string::String> {
                $crate::__run::<$ty>(config)
            }
        }
        $crate::bindings::export!(__DgenGuest with_types_in $crate::bindings);
    };
}

/// A [`DataProfileExt`] from the keys a workload's `[data]` table uses (a JSON object, as plugin params
/// are): `dedup`, `compress`, `dedup_extent` (bytes), `compress_mix` (`[[fraction, ratio], …]`) and
/// `dedup_copies` (`"even"`, `{"zipf": S}` or `{"histogram": [[copies, blocks], …]}`). Missing keys
/// take the run's (dedup 1, compress 1, the run's extent, no mix, even copies).
pub fn profile(keys: &serde_json::Value) -> Result<DataProfileExt> {
    let num = |k: &str, d: f64| -> Result<f64> {
        match keys.get(k) {
            None => Ok(d),
            Some(v) => v.as_f64().ok_or_else(|| format!("{k} = {v}: not a number")),
        }
    };
    let compress_mix = match keys.get("compress_mix") {
        None => Vec::new(),
        Some(serde_json::Value::Array(rows)) => pairs(rows, "compress_mix", "[fraction, ratio]", |x| x.as_f64())?,
        Some(v) => return Err(format!("compress_mix = {v}: not a list of [fraction, ratio]")),
    };
    let dedup_copies = match keys.get("dedup_copies") {
        None => DedupCopies::Even,
        Some(serde_json::Value::String(s)) if s == "even" => DedupCopies::Even,
        Some(v) => match (v.get("zipf"), v.get("histogram")) {
            (Some(s), None) => {
                DedupCopies::Zipf(s.as_f64().ok_or_else(|| format!("dedup_copies: zipf = {s} is not a number"))?)
            }
            (None, Some(serde_json::Value::Array(rows))) => {
                DedupCopies::Histogram(pairs(rows, "dedup_copies", "[copies, blocks]", |x| x.as_u64())?)
            }
            _ => {
                return Err(format!(
                    "dedup_copies = {v}: not \"even\", {{\"zipf\": S}} or {{\"histogram\": [[copies, blocks], …]}}"
                ))
            }
        },
    };
    let histogram = matches!(dedup_copies, DedupCopies::Histogram(_));
    Ok(DataProfileExt {
        dedup: num("dedup", if histogram { 0.0 } else { 1.0 })?,
        compress: num("compress", 1.0)?,
        dedup_extent: num("dedup_extent", 0.0)? as u64,
        compress_mix,
        dedup_copies,
    })
}

/// Rows of two values each (`[a, b]`), read with `get`; an error names the key and the shape wanted.
fn pairs<T>(
    rows: &[serde_json::Value],
    key: &str,
    shape: &str,
    get: impl Fn(&serde_json::Value) -> Option<T>,
) -> Result<Vec<(T, T)>> {
    rows.iter()
        .map(|r| match r.as_array().map(Vec::as_slice) {
            Some([a, b]) => get(a).zip(get(b)).ok_or_else(|| format!("{key}: {r} is not {shape}")),
            _ => Err(format!("{key}: {r} is not {shape}")),
        })
        .collect()
}
