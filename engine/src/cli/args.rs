//! The command line: every command, flag and value parser, with its range (as README's tables
//! give them). Nothing here runs anything.

use clap::{Parser, Subcommand};
use dgen_engine::generator::{DEFAULT_UNIT, MAX_UNIT, MIN_UNIT};
use dgen_engine::sink::FileEngine;
use dgen_engine::size::parse_size;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "dgen-engine",
    version,
    about = "Synthetic data at hardware speed, with exact dedup and compression ratios"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
pub struct ProfileArgs {
    /// Files or directories (walked; symlinks not followed).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The dedup unit the table is for (dedup is also measured at 2×, 4× … up to 64 KiB).
    #[arg(long, default_value_t = DEFAULT_UNIT, value_parser = unit_arg)]
    pub unit: u64,
    /// Print the measurements and the table as JSON instead.
    #[arg(long)]
    pub json: bool,
    /// Memory the dedup maps may take; beyond it they sample blocks more sparsely (1 MiB … 64 GiB).
    #[arg(long, default_value = "256MiB", value_parser = memory_arg)]
    pub memory: u64,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

fn memory_arg(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !(1 << 20..=64 << 30).contains(&n) {
        return Err(format!("{s} is not from 1 MiB to 64 GiB"));
    }
    Ok(n)
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The workload file (TOML).
    pub workload: PathBuf,
    /// Override a workload key, e.g. `--set data.compress=3 --set params.ranks=4`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Run seed (overrides the workload's `seed`).
    #[arg(long, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json_report: Option<PathBuf>,
    /// No progress bar, no plugin info lines, no table (errors and failed checks still print).
    #[arg(short, long)]
    pub quiet: bool,
    /// Also print what goes beyond a one-line error (a plugin trap's Wasm backtrace).
    #[arg(short, long)]
    pub verbose: bool,
    /// Run as rank R of --world-size ranks (0 … world size − 1) without a launcher: the plugin does
    /// rank R's share, with rank R's bytes — what rank R of an MPI run with the same seed does.
    #[arg(long, value_name = "R", allow_hyphen_values = true, requires = "world_size",
          value_parser = clap::value_parser!(u32).range(0..65536))]
    pub rank: Option<u32>,
    /// Ranks in the run (1 … 65536). With --rank, run as that rank; without, run the N ranks one
    /// after another in this process and merge them as rank 0 of an MPI run would.
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub world_size: Option<u32>,
}

#[derive(Subcommand)]
pub enum PluginCommand {
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
pub struct GenArgs {
    /// Bytes to generate: 4096, 10GiB, 1.5 GB, … (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB).
    #[arg(long, allow_hyphen_values = true, value_parser = size_arg)]
    pub size: u64,
    /// Deduplication ratio D ≥ 1 at the dedup unit: total blocks / distinct blocks [default: 1, or
    /// what a --dedup-copies histogram implies].
    #[arg(long, allow_hyphen_values = true, value_parser = ratio_arg)]
    pub dedup: Option<f64>,
    /// Compression ratio C ≥ 1 (zstd, lz4 and gzip all land near it).
    #[arg(long, allow_hyphen_values = true, default_value = "1", value_parser = ratio_arg)]
    pub compress: f64,
    /// Dedup unit: a power of two from 512 B to 1 MiB.
    #[arg(long, allow_hyphen_values = true, default_value_t = DEFAULT_UNIT, value_parser = unit_arg)]
    pub dedup_unit: u64,
    /// Duplicates in aligned runs of this size (a power of two from the dedup unit to 1 MiB): arrays
    /// deduplicating at any unit up to it see the ratio. Default: the dedup unit (32 KiB with a mix).
    #[arg(long, allow_hyphen_values = true, value_parser = unit_arg)]
    pub dedup_extent: Option<u64>,
    /// A compressibility mix instead of one ratio: FRACTION:RATIO,… (e.g. 0.3:1,0.5:2,0.2:8), each
    /// extent's class drawn deterministically; the stream's ratio is 1 / Σ fraction / ratio.
    #[arg(long, allow_hyphen_values = true, value_parser = mix_arg, conflicts_with = "compress")]
    pub compress_mix: Option<Mix>,
    /// How many copies each distinct block has: even (all D), zipf:S (P(k) ∝ k^-S, mean D), or a
    /// file of `copies, blocks` lines (its mean is the dedup ratio).
    #[arg(long, allow_hyphen_values = true)]
    pub dedup_copies: Option<String>,
    /// The profile from a file's `[data]` table (what `dgen-engine profile` prints, or a workload),
    /// instead of the profile flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dedup", "compress", "dedup_unit", "dedup_extent", "compress_mix", "dedup_copies"])]
    pub data: Option<PathBuf>,
    /// Run seed; the same seed and profile give the same bytes. Drawn at random (and printed) if absent.
    #[arg(long, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Generator threads (default: all cores).
    #[arg(long, allow_hyphen_values = true, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Output path; `-` is stdout. A file is written under a temporary name and renamed when complete.
    #[arg(short, long, default_value = "-")]
    pub output: PathBuf,
    /// How files are written: io_uring (default where the kernel allows it) or pwrite.
    #[arg(long, value_parser = engine_arg)]
    pub engine: Option<FileEngine>,
    /// Bypass the page cache (O_DIRECT), also for --verify's read-back.
    #[arg(long)]
    pub direct: bool,
    /// Bytes per write (rounded up to the O_DIRECT alignment).
    #[arg(long, allow_hyphen_values = true, default_value = "8MiB", value_parser = buffer_arg)]
    pub buffer_size: u64,
    /// Buffers in the pool; memory used for data is buffers × buffer size.
    #[arg(long, allow_hyphen_values = true, default_value = "16", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub buffers: u32,
    /// Writes in flight (io_uring queue depth, or pwrite threads).
    #[arg(long, allow_hyphen_values = true, default_value = "8", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub queue_depth: u32,
    /// Read the output back and compare it with the stream: exit 1 at the first difference.
    #[arg(long)]
    pub verify: bool,
    /// Write nothing: compare an existing output file with the stream (exit 1 at the first difference).
    #[arg(long, conflicts_with = "verify")]
    pub verify_only: bool,
    /// Compress the output: `zstd` or `zstd:LEVEL` (1–22); the file name gets `.zst`.
    #[arg(long, value_parser = compress_arg)]
    pub output_compress: Option<i32>,
    /// No progress bar and no summary.
    #[arg(short, long)]
    pub quiet: bool,
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
pub struct Mix(pub Vec<(f64, f64)>);

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
