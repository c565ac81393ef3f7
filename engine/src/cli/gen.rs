//! `dgen-engine gen`: the flags made into a [`GenJob`], run with a progress bar, its summary on
//! stderr (stdout is where `gen` writes its data by default, so it carries nothing else).

use super::args::GenArgs;
use super::{install_cancel, lib_error, Failure};
use crate::terminal::Progress;
use dgen_engine::generator::copies::CopySpec;
use dgen_engine::generator::{DataKeys, Generator, Profile};
use dgen_engine::run::gen_job::{Check, Destination, GenJob};
use dgen_engine::run::generate::GenSpec;
use dgen_engine::run::workload::Plan;
use dgen_engine::sink::FileEngine;
use dgen_engine::Error;

pub fn run(args: GenArgs) -> Result<(), Failure> {
    let profile = match &args.data {
        Some(file) => Plan::data_table(file).map_err(lib_error)?,
        None => profile_of(&args)?,
    };
    let seed = args.seed.unwrap_or_else(dgen_engine::run::random_seed);
    let threads =
        args.threads.map(|t| t as usize).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let gen = Generator::new(seed, profile);
    let to = Destination::of(&args.output).map_err(lib_error)?;
    let mut file_keys = toml::Table::new();
    let engine = match args.engine.unwrap_or(FileEngine::Auto) {
        FileEngine::Auto => "auto",
        FileEngine::Pwrite => "pwrite",
        FileEngine::IoUring => "io_uring",
    };
    file_keys.insert("engine".into(), engine.into());
    file_keys.insert("direct".into(), args.direct.into());
    file_keys.insert("queue_depth".into(), i64::from(args.queue_depth).into());
    let job = GenJob {
        gen: &gen,
        spec: GenSpec {
            size: args.size,
            buffer_size: args.buffer_size as usize,
            buffers: args.buffers as usize,
            threads,
            zstd_level: args.output_compress,
        },
        to,
        file_keys,
        check: match (args.verify, args.verify_only) {
            (true, _) => Check::After,
            (_, true) => Check::Only,
            _ => Check::None,
        },
    };
    let cancel = install_cancel();
    let mut progress = Progress::new(if args.verify_only { 0 } else { args.size }, !args.quiet && !args.verify_only);
    let events = progress.terminal();
    let done = job.run(&mut progress, &events, &cancel);
    progress.finish();
    let done = done.map_err(lib_error)?;
    let failed = done.verdict.as_ref().filter(|v| !v.is_identical());
    if !args.quiet || failed.is_some() {
        for l in &done.lines {
            eprintln!("{l}");
        }
    }
    match failed {
        Some(v) => Err(Failure { code: 1, error: anyhow::anyhow!("verify failed: {v}") }),
        None => Ok(()),
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
