//! The `dgen-engine` command: parses the command line, calls the library, maps errors to exit codes
//! (0 success, 1 a check failed, 2 usage or input error, 3 I/O error).

use anyhow::Context;
use clap::{Parser, Subcommand};
use dgen_engine::gen::{Generator, Profile, DEFAULT_UNIT, MAX_UNIT, MIN_UNIT};
use dgen_engine::size::{format_size, parse_size};
use dgen_engine::Error;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

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
}

#[derive(clap::Args)]
struct GenArgs {
    /// Bytes to generate: 4096, 10GiB, 1.5 GB, … (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB).
    #[arg(long, allow_hyphen_values = true, value_parser = size_arg)]
    size: u64,
    /// Deduplication ratio D ≥ 1 at the dedup unit: total blocks / distinct blocks.
    #[arg(long, allow_hyphen_values = true, default_value = "1", value_parser = ratio_arg)]
    dedup: f64,
    /// Compression ratio C ≥ 1 (zstd, lz4 and gzip all land near it).
    #[arg(long, allow_hyphen_values = true, default_value = "1", value_parser = ratio_arg)]
    compress: f64,
    /// Dedup unit: a power of two from 512 B to 1 MiB.
    #[arg(long, allow_hyphen_values = true, default_value_t = DEFAULT_UNIT, value_parser = unit_arg)]
    dedup_unit: u64,
    /// Run seed; the same seed and profile give the same bytes. Drawn at random (and printed) if absent.
    #[arg(long, allow_hyphen_values = true)]
    seed: Option<u64>,
    /// Generator threads (default: all cores).
    #[arg(long, allow_hyphen_values = true, value_parser = clap::value_parser!(u32).range(1..=4096))]
    threads: Option<u32>,
    /// Bytes per write.
    #[arg(long, allow_hyphen_values = true, default_value = "8MiB", value_parser = buffer_arg)]
    buffer_size: u64,
    /// Output path; `-` is stdout.
    #[arg(short, long, default_value = "-")]
    output: PathBuf,
    /// No summary on stderr.
    #[arg(short, long)]
    quiet: bool,
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}

fn unit_arg(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !n.is_power_of_two() || !(MIN_UNIT..=MAX_UNIT).contains(&n) {
        return Err(format!(
            "{n} bytes is not a power of two from 512 B to 1 MiB"
        ));
    }
    Ok(n)
}

fn buffer_arg(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("must be at least 1 byte".into()),
        n if n > 1 << 30 => Err("must be at most 1 GiB".into()),
        n => Ok(n),
    }
}

fn ratio_arg(s: &str) -> Result<f64, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
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
        Failure {
            code: 2,
            error: error.into(),
        }
    }
    fn io(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: 3,
            error: error.into(),
        }
    }
}

/// The workload key a library error names, as the flag the user typed.
fn flag_for(key: &str) -> &str {
    match key {
        "data.dedup" => "--dedup",
        "data.compress" => "--compress",
        "data.dedup_unit" => "--dedup-unit",
        other => other,
    }
}

fn profile_error(e: Error) -> Failure {
    match e {
        Error::InvalidValue { key, value, reason } => Failure::usage(anyhow::anyhow!(
            "invalid value '{value}' for '{}': {reason}",
            flag_for(key)
        )),
        other => Failure::io(other),
    }
}

fn gen(args: GenArgs) -> Result<(), Failure> {
    let profile =
        Profile::new(args.dedup, args.compress, args.dedup_unit).map_err(profile_error)?;
    let seed = args.seed.unwrap_or_else(random_seed);
    let threads = args
        .threads
        .map(|t| t as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| {
            Failure::io(anyhow::anyhow!(
                "cannot start {threads} generator threads: {e}"
            ))
        })?;
    let gen = Generator::new(seed, profile);
    let to_stdout = args.output.as_os_str() == "-";
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        let f = std::fs::File::create(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))
            .map_err(Failure::io)?;
        Box::new(f)
    };
    let target = if to_stdout {
        "stdout".to_string()
    } else {
        args.output.display().to_string()
    };
    let stats = dgen_engine::output::write_stream(
        &gen,
        0,
        args.size,
        &mut out,
        &pool,
        args.buffer_size as usize,
    )
    .with_context(|| format!("writing {target}"))
    .map_err(Failure::io)?;
    drop(out);
    if !args.quiet {
        let secs = stats.elapsed.as_secs_f64();
        eprintln!(
            "dgen-engine gen: {} ({} bytes) to {target} in {secs:.3} s = {:.2} GB/s; seed {seed}; {profile}; {threads} threads, {} kernel; {:.0}% of the time in write",
            format_size(stats.bytes),
            stats.bytes,
            stats.bytes as f64 / secs.max(1e-9) / 1e9,
            gen.kernel().name(),
            100.0 * stats.write_time.as_secs_f64() / secs.max(1e-9),
        );
    }
    Ok(())
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}
