//! The `dgen-engine` command: parses the command line, calls the library, maps errors to exit codes
//! (0 success, 1 a check failed, 2 usage or input error, 3 I/O error, 130 interrupted).

mod terminal;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dgen_engine::generator::copies::CopySpec;
use dgen_engine::generator::{DataKeys, Generator, Profile, DEFAULT_UNIT, MAX_UNIT, MIN_UNIT};
use dgen_engine::object::Content;
use dgen_engine::pipeline::verify;
use dgen_engine::plugin::host::Mode;
use dgen_engine::report;
use dgen_engine::run::generate::GenSpec;
use dgen_engine::run::session::RunEnv;
use dgen_engine::run::workload::Plan;
use dgen_engine::sink::{FileEngine, FileOptions, FileSink, NullSink, Sink};
use dgen_engine::size::{format_size, parse_size};
use dgen_engine::world::World;
use dgen_engine::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use terminal::{say, Progress, Terminal};

#[derive(Parser)]
#[command(
    name = "dgen-engine",
    version,
    about = "Synthetic data at hardware speed, with exact dedup and compression ratios"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a stream of synthetic data to stdout or a file.
    Gen(GenArgs),
    /// Run a workload: its plugin decides what is written and what counts as a pass.
    Run(RunArgs),
    /// Re-read everything a workload writes and compare it with what was meant to be written.
    Verify(RunArgs),
    /// Build and inspect plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Measure a data sample (files or directory trees) and print the `[data]` table that makes
    /// `gen` and `run` write data like it: dedup at several units, copies per block, per-block
    /// compressibility. Nothing of the sample's content is copied.
    Profile(ProfileArgs),
}

#[derive(clap::Args)]
struct ProfileArgs {
    /// Files or directories (walked; symlinks not followed).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The dedup unit the table is for (dedup is also measured at 2×, 4× … up to 64 KiB).
    #[arg(long, default_value_t = DEFAULT_UNIT, value_parser = unit_arg)]
    unit: u64,
    /// Print the measurements and the table as JSON instead.
    #[arg(long)]
    json: bool,
    /// Memory the dedup maps may take; beyond it they sample blocks more sparsely (1 MiB … 64 GiB).
    #[arg(long, default_value = "256MiB", value_parser = memory_arg)]
    memory: u64,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

fn memory_arg(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !(1 << 20..=64 << 30).contains(&n) {
        return Err(format!("{s} is not from 1 MiB to 64 GiB"));
    }
    Ok(n)
}

#[derive(clap::Args)]
struct RunArgs {
    /// The workload file (TOML).
    workload: PathBuf,
    /// Override a workload key, e.g. `--set data.compress=3 --set params.ranks=4`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Run seed (overrides the workload's `seed`).
    #[arg(long, allow_hyphen_values = true)]
    seed: Option<u64>,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json_report: Option<PathBuf>,
    /// No progress bar, no plugin info lines, no table (errors and failed checks still print).
    #[arg(short, long)]
    quiet: bool,
    /// Also print what goes beyond a one-line error (a plugin trap's Wasm backtrace).
    #[arg(short, long)]
    verbose: bool,
    /// Run as rank R of --world-size ranks (0 … world size − 1) without a launcher: the plugin does
    /// rank R's share, with rank R's bytes — what rank R of an MPI run with the same seed does.
    #[arg(long, value_name = "R", allow_hyphen_values = true, requires = "world_size",
          value_parser = clap::value_parser!(u32).range(0..65536))]
    rank: Option<u32>,
    /// Ranks in the run (1 … 65536). With --rank, run as that rank; without, run the N ranks one
    /// after another in this process and merge them as rank 0 of an MPI run would.
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    world_size: Option<u32>,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Build a plugin crate into a .wasm component.
    Build {
        /// The plugin crate's directory.
        dir: PathBuf,
        /// Where to write the component (default: DIR/target/NAME.wasm).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Show a plugin's name, version, contract and documented params.
    Inspect {
        /// A .wasm plugin (component or core module).
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct GenArgs {
    /// Bytes to generate: 4096, 10GiB, 1.5 GB, … (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB).
    #[arg(long, allow_hyphen_values = true, value_parser = size_arg)]
    size: u64,
    /// Deduplication ratio D ≥ 1 at the dedup unit: total blocks / distinct blocks [default: 1, or
    /// what a --dedup-copies histogram implies].
    #[arg(long, allow_hyphen_values = true, value_parser = ratio_arg)]
    dedup: Option<f64>,
    /// Compression ratio C ≥ 1 (zstd, lz4 and gzip all land near it).
    #[arg(long, allow_hyphen_values = true, default_value = "1", value_parser = ratio_arg)]
    compress: f64,
    /// Dedup unit: a power of two from 512 B to 1 MiB.
    #[arg(long, allow_hyphen_values = true, default_value_t = DEFAULT_UNIT, value_parser = unit_arg)]
    dedup_unit: u64,
    /// Duplicates in aligned runs of this size (a power of two from the dedup unit to 1 MiB): arrays
    /// deduplicating at any unit up to it see the ratio. Default: the dedup unit (32 KiB with a mix).
    #[arg(long, allow_hyphen_values = true, value_parser = unit_arg)]
    dedup_extent: Option<u64>,
    /// A compressibility mix instead of one ratio: FRACTION:RATIO,… (e.g. 0.3:1,0.5:2,0.2:8), each
    /// extent's class drawn deterministically; the stream's ratio is 1 / Σ fraction / ratio.
    #[arg(long, allow_hyphen_values = true, value_parser = mix_arg, conflicts_with = "compress")]
    compress_mix: Option<Mix>,
    /// How many copies each distinct block has: even (all D), zipf:S (P(k) ∝ k^-S, mean D), or a
    /// file of `copies, blocks` lines (its mean is the dedup ratio).
    #[arg(long, allow_hyphen_values = true)]
    dedup_copies: Option<String>,
    /// The profile from a file's `[data]` table (what `dgen-engine profile` prints, or a workload),
    /// instead of the profile flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dedup", "compress", "dedup_unit", "dedup_extent", "compress_mix", "dedup_copies"])]
    data: Option<PathBuf>,
    /// Run seed; the same seed and profile give the same bytes. Drawn at random (and printed) if absent.
    #[arg(long, allow_hyphen_values = true)]
    seed: Option<u64>,
    /// Generator threads (default: all cores).
    #[arg(long, allow_hyphen_values = true, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Output path; `-` is stdout. A file is written under a temporary name and renamed when complete.
    #[arg(short, long, default_value = "-")]
    output: PathBuf,
    /// How files are written: io_uring (default where the kernel allows it) or pwrite.
    #[arg(long, value_parser = engine_arg)]
    engine: Option<FileEngine>,
    /// Bypass the page cache (O_DIRECT), also for --verify's read-back.
    #[arg(long)]
    direct: bool,
    /// Bytes per write (rounded up to the O_DIRECT alignment).
    #[arg(long, allow_hyphen_values = true, default_value = "8MiB", value_parser = buffer_arg)]
    buffer_size: u64,
    /// Buffers in the pool; memory used for data is buffers × buffer size.
    #[arg(long, allow_hyphen_values = true, default_value = "16", value_parser = clap::value_parser!(u32).range(1..=65536))]
    buffers: u32,
    /// Writes in flight (io_uring queue depth, or pwrite threads).
    #[arg(long, allow_hyphen_values = true, default_value = "8", value_parser = clap::value_parser!(u32).range(1..=1024))]
    queue_depth: u32,
    /// Read the output back and compare it with the stream: exit 1 at the first difference.
    #[arg(long)]
    verify: bool,
    /// Write nothing: compare an existing output file with the stream (exit 1 at the first difference).
    #[arg(long, conflicts_with = "verify")]
    verify_only: bool,
    /// Compress the output: `zstd` or `zstd:LEVEL` (1–22); the file name gets `.zst`.
    #[arg(long, value_parser = compress_arg)]
    output_compress: Option<i32>,
    /// No progress bar and no summary.
    #[arg(short, long)]
    quiet: bool,
}

fn engine_arg(s: &str) -> Result<FileEngine, String> {
    s.parse()
}

fn compress_arg(s: &str) -> Result<i32, String> {
    let (algo, level) = s.split_once(':').map_or((s, None), |(a, l)| (a, Some(l)));
    if algo != "zstd" {
        return Err(format!("unknown compressor '{algo}' (use zstd or zstd:LEVEL)"));
    }
    match level {
        None => Ok(3),
        Some(l) => match l.parse::<i32>() {
            Ok(n) if (1..=22).contains(&n) => Ok(n),
            _ => Err(format!("zstd level '{l}' must be a number from 1 to 22")),
        },
    }
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}

fn unit_arg(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !n.is_power_of_two() || !(MIN_UNIT..=MAX_UNIT).contains(&n) {
        return Err(format!("{n} bytes is not a power of two from 512 B to 1 MiB"));
    }
    Ok(n)
}

/// `--compress-mix`'s classes (a newtype: clap would take a `Vec` field for repeated flags).
#[derive(Clone, Debug)]
struct Mix(Vec<(f64, f64)>);

fn mix_arg(s: &str) -> Result<Mix, String> {
    s.split(',')
        .map(|class| {
            let (f, r) = class.split_once(':').ok_or_else(|| format!("'{class}' is not FRACTION:RATIO"))?;
            let num = |x: &str| x.trim().parse::<f64>().map_err(|_| format!("'{x}' in '{class}' is not a number"));
            Ok((num(f)?, num(r)?))
        })
        .collect::<Result<_, String>>()
        .map(Mix)
}

fn buffer_arg(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("must be at least 1 byte".into()),
        n if n > 1 << 30 => Err("must be at most 1 GiB".into()),
        n => Ok(n),
    }
}

fn ratio_arg(s: &str) -> Result<f64, String> {
    let x: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !x.is_finite() || x < 1.0 {
        return Err(format!("'{s}' must be a number ≥ 1"));
    }
    Ok(x)
}

/// An error that knows its exit code.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure { code: 2, error: error.into() }
    }
    fn io(error: impl Into<anyhow::Error>) -> Failure {
        Failure { code: 3, error: error.into() }
    }
}

/// The workload key a library error names, as the flag the user typed.
fn flag_for(key: &str) -> &str {
    match key {
        "data.dedup" => "--dedup",
        "data.compress" => "--compress",
        "data.dedup_unit" => "--dedup-unit",
        "data.dedup_extent" => "--dedup-extent",
        "data.compress_mix" => "--compress-mix",
        "data.dedup_copies" => "--dedup-copies",
        other => other,
    }
}

fn profile_error(e: Error) -> Failure {
    match e {
        Error::InvalidValue { key, value, reason } => {
            Failure::usage(anyhow::anyhow!("invalid value '{value}' for '{}': {reason}", flag_for(key)))
        }
        other => Failure::io(other),
    }
}

/// Where `gen` writes.
enum Output {
    Stdout,
    /// A device or pipe: written as a stream, in place.
    Stream(PathBuf),
    /// `/dev/null`: the null sink, which measures the engine alone.
    Null,
    /// A regular file: through a file sink, temporary name then rename.
    File {
        dir: PathBuf,
        name: String,
    },
}

/// Opens where `gen`'s stream goes: a writer (stdout, a pipe) or an object of a sink (a file, the
/// null sink); also the name it goes by in messages and, for a sink, how it writes.
fn open_dest<'a>(
    args: &GenArgs,
    output: &Output,
    file_sink: &'a mut Option<FileSink>,
) -> Result<(Dest<'a>, String, Option<String>), Failure> {
    Ok(match output {
        Output::Stdout => (Dest::Writer(Box::new(std::io::stdout()), "stdout".to_string()), "stdout".to_string(), None),
        Output::Stream(p) => {
            // Without blocking: a FIFO no one reads yet is an error now (ENXIO), not a wait that
            // Ctrl-C cannot end. Once open, writes block as a pipe's do.
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(p)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::ENXIO) => {
                        anyhow::anyhow!("cannot open {}: no process is reading that FIFO", p.display())
                    }
                    _ => anyhow::Error::new(e).context(format!("cannot open {}", p.display())),
                })
                .map_err(Failure::io)?;
            dgen_engine::input::set_blocking(&f);
            (Dest::Writer(Box::new(f), p.display().to_string()), p.display().to_string(), None)
        }
        Output::Null => {
            (Dest::Object(&NullSink as &dyn Sink, "null".to_string()), "null".to_string(), Some("null".to_string()))
        }
        Output::File { dir, name } => {
            let opts = FileOptions {
                engine: args.engine.unwrap_or(FileEngine::Auto),
                direct: args.direct,
                queue_depth: args.queue_depth as usize,
                create_root: false,
                // The user named this file: it is replaced whoever wrote it.
                replace_any: true,
                ..FileOptions::default()
            };
            let file_sink = file_sink.insert(FileSink::new(dir, opts).map_err(|e| {
                let mut f = lib_error(e);
                f.error = f.error.context(format!("cannot write {}", args.output.display()));
                f
            })?);
            if !args.quiet {
                for note in file_sink.opening_notes() {
                    say(&format!("note: {note}"));
                }
            }
            let name = if args.output_compress.is_some() { format!("{name}.zst") } else { name.clone() };
            let target = dir.join(&name).display().to_string();
            let how = format!("{}{}", file_sink.capabilities().engine, if args.direct { ", O_DIRECT" } else { "" });
            (Dest::Object(&*file_sink as &dyn Sink, name), target, Some(how))
        }
    })
}

/// An opened output: a writer taking the bytes in order, or object `name` of a sink.
enum Dest<'a> {
    Writer(Box<dyn Write + Send>, String),
    Object(&'a dyn Sink, String),
}

fn classify(path: &Path) -> Result<Output, Failure> {
    if path.as_os_str() == "-" {
        return Ok(Output::Stdout);
    }
    if path == Path::new("/dev/null") {
        return Ok(Output::Null);
    }
    if let Ok(m) = std::fs::metadata(path) {
        if !m.is_file() && !m.is_dir() {
            return Ok(Output::Stream(path.to_path_buf()));
        }
        if m.is_dir() {
            return Err(Failure::usage(anyhow::anyhow!(
                "invalid value '{}' for '--output': is a directory",
                path.display()
            )));
        }
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(|| {
        Failure::usage(anyhow::anyhow!("invalid value '{}' for '--output': not a file name", path.display()))
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(Output::File { dir, name })
}

/// A library error as the CLI reports it: its one-line message (its sources are for `-v`, the
/// message already says the cause) and the exit code its variant decides.
fn lib_error(e: Error) -> Failure {
    Failure { code: e.exit_code(), error: anyhow::Error::msg(e.to_string()) }
}

/// The profile of `gen`'s flags.
fn profile_of(args: &GenArgs) -> Result<Profile, Failure> {
    let copies = args.dedup_copies.as_deref().map(CopySpec::parse).transpose().map_err(profile_error)?;
    Profile::from_keys(DataKeys {
        dedup: args.dedup,
        compress: args.compress,
        unit: args.dedup_unit,
        extent: args.dedup_extent,
        mix: args.compress_mix.as_ref().map(|m| m.0.clone()),
        copies,
    })
    .map_err(profile_error)
}

fn gen(args: GenArgs) -> Result<(), Failure> {
    let profile = match &args.data {
        Some(file) => Plan::data_table(file).map_err(lib_error)?,
        None => profile_of(&args)?,
    };
    let seed = args.seed.unwrap_or_else(random_seed);
    let threads =
        args.threads.map(|t| t as usize).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let gen = Generator::new(seed, profile.clone());
    let output = classify(&args.output)?;
    if (args.verify || args.verify_only) && !matches!(output, Output::File { .. }) {
        let flag = if args.verify { "--verify" } else { "--verify-only" };
        return Err(Failure::usage(anyhow::anyhow!("'{flag}' needs a regular file for '--output'")));
    }
    // Refused before anything is allocated or created.
    dgen_engine::pool::pool_fits(args.buffers as u64, args.buffer_size)
        .map_err(|m| Failure::usage(anyhow::anyhow!("--buffers {}: {m}", args.buffers)))?;
    if matches!(output, Output::File { .. }) && args.size > i64::MAX as u64 {
        return Err(Failure::usage(anyhow::anyhow!(
            "--size {}: more than a file can hold ({})",
            format_size(args.size),
            format_size(i64::MAX as u64)
        )));
    }
    let cancel_flag = install_cancel();
    let cancel = &*cancel_flag;
    let headline = |bytes: u64, target: &str, elapsed: std::time::Duration| {
        format!(
            "dgen-engine gen: {} ({bytes} bytes) to {target} in {:.3} s = {:.2} GB/s; seed {seed}; {profile}; {threads} threads, {} kernel",
            format_size(bytes),
            elapsed.as_secs_f64(),
            report::gbps(bytes, elapsed),
            gen.kernel().name(),
        )
    };
    let mut lines = Vec::new();
    let mut verdict = None;
    let mut file_sink = None;
    let (dest, target, how) = open_dest(&args, &output, &mut file_sink)?;
    let content = Content::Stream { stream: 0, offset: 0 };
    let spec = GenSpec {
        size: args.size,
        buffer_size: args.buffer_size as usize,
        buffers: args.buffers as usize,
        threads,
        zstd_level: args.output_compress,
    };
    let object = match &dest {
        Dest::Object(sink, name) => Some((*sink, name.clone())),
        Dest::Writer(..) => None,
    };
    if !args.verify_only {
        let out = match dest {
            Dest::Writer(out, label) => dgen_engine::run::generate::Output::Writer { out, label },
            Dest::Object(sink, name) => dgen_engine::run::generate::Output::Object { sink, name },
        };
        let mut progress = Progress::new(args.size, !args.quiet);
        let r = dgen_engine::run::generate::generate(&gen, &spec, out, &mut progress, cancel);
        progress.finish();
        let r = r.map_err(lib_error)?;
        lines.push(headline(r.stats.bytes, &target, r.stats.elapsed));
        let pool = format!("pool {} ({} x {})", format_size(r.pool_bytes), r.pool_count, format_size(r.chunk as u64));
        let engine = how.as_ref().map_or(String::new(), |h| format!("engine {h}; "));
        match r.compressed {
            None => lines.push(format!("{engine}{pool}; crc32c of the data: 0x{:08x}", r.crc32c)),
            Some((stored, ops)) => {
                let writes = if ops > 0 { format!(" in {ops} writes") } else { String::new() };
                lines.push(format!(
                    "{engine}{pool}; zstd level {}: {} written ({:.2}:1){writes}; crc32c of the uncompressed data: 0x{:08x}",
                    args.output_compress.unwrap_or_default(),
                    format_size(stored),
                    r.stats.bytes as f64 / stored.max(1) as f64,
                    r.crc32c
                ))
            }
        }
        lines.extend(report::run_details(&r.stats, r.chunk));
        // Exact for this length; said when it is not the profile's D to 0.1 %.
        let d = gen.profile().dedup();
        if let Some(held) = gen.dedup_over(r.stats.bytes).filter(|h| (h / d - 1.0).abs() > 0.001) {
            let why = if (held / d - 1.0).abs() > 0.01 {
                ": its copies need more rows of 4 MiB than it has (README: \"Duplicate counts\")"
            } else {
                ""
            };
            lines.push(format!("dedup: this stream holds {held:.4}, the profile {d}{why}"));
        }
    }
    if let (true, Some((sink, name))) = (args.verify || args.verify_only, object) {
        // Two buffers of the write size, rounded as the executor rounds it for this sink.
        let caps = sink.capabilities();
        let size = dgen_engine::pipeline::executor::buffer_size_for(&caps, args.buffer_size as usize);
        let pool = dgen_engine::pool::BufferPool::new(2, size, caps.alignment)
            .map_err(|e| lib_error(Error::Resource(e.to_string())))?;
        let reader = sink.open(&name).map_err(lib_error)?;
        let v = if args.output_compress.is_some() {
            let dec = zstd::stream::read::Decoder::new(verify::ObjectRead::new(reader))
                .with_context(|| format!("reading {target}"))
                .map_err(Failure::io)?;
            verify::compare(verify::sequential(&target, dec), None, &gen, &content, args.size, &pool, cancel)
        } else {
            verify::compare_object(reader, &gen, &content, args.size, &pool, cancel)
        };
        let v = v.map_err(lib_error)?;
        lines.push(format!("verify: {target}: {v}"));
        verdict = Some(v);
    }
    if !args.quiet || verdict.as_ref().is_some_and(|v| !v.is_identical()) {
        for l in &lines {
            eprintln!("{l}");
        }
    }
    match verdict {
        Some(v) if !v.is_identical() => Err(Failure { code: 1, error: anyhow::anyhow!("verify failed: {v}") }),
        _ => Ok(()),
    }
}

fn run_workload(args: RunArgs, mode: Mode) -> Result<(), Failure> {
    if let (None, Some(n)) = (args.rank, args.world_size) {
        return run_ranks_in_turn(args, mode, n);
    }
    let early = early_failure(&args, mode);
    let cancel = install_cancel();
    let world = Arc::new(World::for_run(args.rank, args.world_size, cancel.clone()).map_err(lib_error)?);
    // Rank 0 of an MPI run speaks for all; a rank run alone (`--rank`) speaks for itself.
    let root = world.rank() == 0 || !world.is_mpi();
    // Under a launcher only rank 0 talks; the others print their errors only.
    let quiet = args.quiet || !root;
    // A rank that cannot start tells the others, so none of them waits at the first barrier.
    let early = |e: Error| {
        world.fail(e.exit_code(), &e.to_string());
        world.end_failed(e.exit_code(), FAILED_GRACE);
        early(e)
    };
    let plan = Plan::load(&args.workload, &args.sets).map_err(early)?;
    let plugin = dgen_engine::run::session::load_plugin(&plan, quiet, &Terminal::plain()).map_err(early)?;
    let seed = args.seed.or(plan.seed).unwrap_or_else(random_seed);
    let mut progress = Progress::new(0, !quiet && mode == Mode::Write);
    let env = RunEnv {
        quiet,
        cancel: cancel.clone(),
        events: Arc::new(progress.terminal()),
        world: world.clone(),
        results: args.json_report.clone(),
        carried: 0,
    };
    let outcome = dgen_engine::run::session::execute(&plan, &plugin, seed, mode, &mut progress, &env);
    progress.finish();
    let mut outcome = outcome.map_err(early)?;
    let gathered = dgen_engine::run::merge::after_run(&world, &mut outcome, &cancel).map_err(lib_error)?;
    let own_code = outcome.exit_code();
    let faulted = outcome.error.is_some();
    let mut lines = report::outcome_lines(&plan, &outcome);
    if let Some(e) = outcome.error.as_ref().filter(|_| world.is_mpi() && !root) {
        lines = vec![format!("rank {}: error: {e}", world.rank())];
    }
    // The JSON report can be big (every metric, every object): built only when asked for.
    let mut json = args.json_report.as_ref().filter(|_| root).map(|_| report::outcome_json(&plan, &outcome));
    let (mut code, mut others_failed) = (own_code, Vec::new());
    if let Some(g) = &gathered {
        code = code.max(g.merged.exit_code());
        others_failed = g.merged.ranks.iter().filter(|r| r.exit_code != 0).map(|r| r.rank).collect();
        lines.extend(g.lines());
        json = json.map(|j| g.into_json(j, code));
    }
    if (!quiet || code != 0) && (root || faulted) {
        for l in &lines {
            say(l);
        }
    } else if root {
        // Warnings (an upload that could not be aborted) are printed even when quiet.
        for n in outcome.notes.iter().filter(|n| n.starts_with("warning:")) {
            say(n);
        }
    }
    if let (Some(path), Some(json)) = (&args.json_report, &json) {
        write_report(path, json)?;
    }
    if faulted {
        // Every rank has aborted its open objects by now; rank 0 waits for them, then ends the job.
        world.end_failed(code, FAILED_GRACE);
    } else {
        world.finish();
    }
    if outcome.error.is_none() && own_code == 0 && code != 0 {
        let ranks: Vec<String> = others_failed.iter().map(u32::to_string).collect();
        return Err(Failure { code, error: anyhow::anyhow!("rank {} did not pass its checks", ranks.join(", ")) });
    }
    match (outcome.error, code) {
        (Some(e), _) => {
            if args.verbose {
                for l in e.detail().into_iter().flat_map(str::lines) {
                    say(&format!("detail: {l}"));
                }
                for c in e.causes() {
                    say(&format!("caused by: {c}"));
                }
            }
            Err(lib_error(e))
        }
        (None, 0) => Ok(()),
        (None, code) => {
            let failed: Vec<String> = outcome
                .report
                .iter()
                .flat_map(|r| r.checks.iter().filter(|c| !c.passed).map(|c| format!("'{}'", c.name)))
                .collect();
            let what = if failed.is_empty() {
                "some objects differ from what was written".to_string()
            } else {
                format!("check {} failed", failed.join(", "))
            };
            Err(Failure { code, error: anyhow::anyhow!("{what}") })
        }
    }
}

fn plugin_build(dir: &Path, output: Option<&Path>) -> Result<(), Failure> {
    let out = dgen_engine::plugin::build::build(dir, output, false, &Terminal::plain()).map_err(lib_error)?;
    let bytes = std::fs::read(&out).map_err(|e| Failure::io(anyhow::Error::new(e)))?;
    println!("{}", out.display());
    eprintln!("built {} ({} bytes, sha256 {})", out.display(), bytes.len(), dgen_engine::plugin::sha256_hex(&bytes));
    Ok(())
}

fn plugin_inspect(file: &Path) -> Result<(), Failure> {
    let plugin = dgen_engine::plugin::load(file, None).map_err(lib_error)?;
    let m = &plugin.meta;
    let text = |s: &str| dgen_engine::input::sanitize(s, 4000);
    println!("name:     {}", text(&m.name));
    println!("version:  {}", text(&m.version));
    println!("contract: {}", text(&m.contract));
    println!("sdk:      {}", text(&m.sdk));
    println!("sha256:   {}", plugin.sha256);
    println!("params:   {}", text(&m.params));
    Ok(())
}

/// `--world-size N` without `--rank`: the library runs ranks 0 … N − 1 one after another in this
/// process and merges them; this prints and saves what it made.
fn run_ranks_in_turn(args: RunArgs, mode: Mode, n: u32) -> Result<(), Failure> {
    let early = early_failure(&args, mode);
    if dgen_engine::world::launcher_world_size().is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--world-size is for runs without a launcher; under mpirun/srun the launcher assigns the ranks"
        )));
    }
    let plan = Plan::load(&args.workload, &args.sets).map_err(early)?;
    let plugin = dgen_engine::run::session::load_plugin(&plan, args.quiet, &Terminal::plain()).map_err(early)?;
    let seed = args.seed.or(plan.seed).unwrap_or_else(random_seed);
    let cancel = install_cancel();
    let bar = !args.quiet && mode == Mode::Write;
    let mut screen = |_rank: u32| {
        let progress = RankProgress(Progress::new(0, bar));
        let events: Arc<dyn dgen_engine::events::Events> = Arc::new(progress.0.terminal());
        (Box::new(progress) as Box<dyn dgen_engine::pipeline::executor::Observer + Send>, events)
    };
    let turns = dgen_engine::run::in_turn::run(
        &plan,
        &plugin,
        seed,
        mode,
        n,
        &cancel,
        args.json_report.as_deref(),
        &mut screen,
    )
    .map_err(early)?;
    if !args.quiet || turns.code != 0 {
        for l in &turns.lines {
            say(l);
        }
    }
    if let (Some(path), Some(json)) = (&args.json_report, &turns.json) {
        write_report(path, json)?;
    }
    if let Some((rank, e)) = turns.failed {
        return Err(Failure { code: turns.code, error: anyhow::anyhow!("rank {rank} of {n} failed: {e}") });
    }
    match turns.code {
        0 => Ok(()),
        code => {
            let ranks: Vec<String> = turns.not_passed.iter().map(u32::to_string).collect();
            Err(Failure { code, error: anyhow::anyhow!("rank {} did not pass", ranks.join(", ")) })
        }
    }
}

/// A rank's progress line, ended when the rank is done.
struct RankProgress(Progress);

impl dgen_engine::pipeline::executor::Observer for RankProgress {
    fn progress(&mut self, bytes: u64) {
        dgen_engine::pipeline::executor::Observer::progress(&mut self.0, bytes);
    }
}

impl Drop for RankProgress {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// How a failure before the run ends: with a JSON report of it when one was asked for.
fn early_failure(args: &RunArgs, mode: Mode) -> impl Fn(Error) -> Failure + Copy + '_ {
    move |e: Error| {
        if let Some(path) = &args.json_report {
            let _ = write_report(path, &report::failure_json(&args.workload, mode == Mode::Verify, &e));
        }
        lib_error(e)
    }
}

/// Writes a JSON report to `path`.
fn write_report(path: &Path, json: &serde_json::Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(json).unwrap_or_default();
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the JSON report {}", path.display()))
        .map_err(Failure::io)
}

/// How long rank 0 of a failed run waits for the other ranks to abort their open objects before it
/// ends the job.
const FAILED_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Ctrl-C sets a flag the pipeline checks, so a run aborts cleanly instead of dying mid-write.
fn profile_sample(args: ProfileArgs) -> Result<(), Failure> {
    use dgen_engine::generator::sample as profile;
    let cancel = install_cancel();
    let files = profile::files(&args.paths).map_err(lib_error)?;
    let mut bar = Progress::new(files.iter().map(|f| f.1).sum(), !args.quiet).reading();
    let spec = profile::ProfileSpec { files, unit: args.unit, memory: args.memory as usize };
    let start = std::time::Instant::now();
    let sample =
        profile::scan(&spec, &mut |b| dgen_engine::pipeline::executor::Observer::progress(&mut bar, b), &cancel)
            .map_err(lib_error)?;
    bar.finish();
    let secs = start.elapsed().as_secs_f64();
    if args.json {
        let mut j = sample.json(&args.paths);
        j["seconds"] = serde_json::json!(secs);
        println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
        return Ok(());
    }
    let names: Vec<String> =
        args.paths.iter().map(|p| dgen_engine::input::sanitize(&p.display().to_string(), 4000)).collect();
    println!("# dgen-engine profile of {}", names.join(" "));
    println!(
        "# {} files, {} in {secs:.1} s ({:.2} GB/s); dedup sampled 1 in {} blocks, maps {} at most",
        sample.files,
        format_size(sample.bytes),
        sample.bytes as f64 / secs.max(1e-9) / 1e9,
        sample.sample_one_in,
        format_size(sample.memory as u64)
    );
    let at: Vec<String> = sample.dedup.iter().map(|d| format!("{} {:.3}", format_size(d.unit), d.ratio())).collect();
    println!("# dedup at {}", at.join(", "));
    let total: u64 = sample.compress.iter().map(|b| b.blocks).sum::<u64>().max(1);
    let bins: Vec<String> = sample
        .compress
        .iter()
        .filter(|b| b.blocks > 0)
        .map(|b| format!("{:.1}% at {:.2}", 100.0 * b.blocks as f64 / total as f64, b.ratio()))
        .collect();
    println!(
        "# per-block zstd -1 ({} blocks, raw when saving < 12.5 %): {}",
        format_size(sample.unit),
        bins.join(", ")
    );
    print!("{}", sample.data_toml());
    Ok(())
}

fn install_cancel() -> Arc<AtomicBool> {
    static CANCEL: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    CANCEL
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let handler_flag = flag.clone();
            let _ = ctrlc::set_handler(move || {
                if handler_flag.swap(true, Ordering::SeqCst) {
                    // A second Ctrl-C: the user insists.
                    std::process::exit(130);
                }
            });
            flag
        })
        .clone()
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}

/// Clap's message up to its first blank line, on one line.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        parts.push(line.trim());
    }
    parts.join(" ")
}

fn main() -> ExitCode {
    // This process ends right after its command: aborted temporaries can be closed after it.
    dgen_engine::sink::file::close_late();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Gen(args) => gen(args),
        Command::Run(args) => run_workload(args, Mode::Write),
        Command::Verify(args) => run_workload(args, Mode::Verify),
        Command::Plugin(PluginCommand::Build { dir, output }) => plugin_build(&dir, output.as_deref()),
        Command::Plugin(PluginCommand::Inspect { file }) => plugin_inspect(&file),
        Command::Profile(args) => profile_sample(args),
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            say(&format!("error: {:#}", f.error));
            ExitCode::from(f.code)
        }
    };
    // Aborted temporaries are slow to close (their pages are freed then): done after we are gone.
    dgen_engine::sink::file::close_in_background();
    code
}
