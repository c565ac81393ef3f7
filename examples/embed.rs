//! Embedding dgen-engine in a program of your own: a profile's stream written to a file and read
//! back, then a workload run through the same `Session` the CLI uses, with its report.
//!
//! ```sh
//! cargo run --release --example embed -- /tmp/embed-demo
//! ```

use dgen_engine::events::Silent;
use dgen_engine::plugin::host::Mode;
use dgen_engine::run::gen_job::{Check, Destination, GenJob};
use dgen_engine::run::generate::GenSpec;
use dgen_engine::run::{RunEnv, Session};
use dgen_engine::{Generator, Profile};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "embed-demo".into()));
    std::fs::create_dir_all(&dir)?;
    let cancel = Arc::new(AtomicBool::new(false));

    // 1. 64 MiB that deduplicate 2:1 at 4 KiB and compress 3:1, to a file, read back and compared.
    let gen = Generator::new(42, Profile::new(2.0, 3.0, 4096)?);
    let job = GenJob {
        gen: &gen,
        spec: GenSpec { size: 64 << 20, buffer_size: 4 << 20, buffers: 8, threads: 2, zstd_level: None },
        to: Destination::File(dir.join("data.bin")),
        file_keys: toml::Table::new(),
        check: Check::After,
    };
    let done = job.run(&mut (), &Silent, &cancel)?;
    for line in &done.lines {
        println!("{line}");
    }

    // 2. The shipped `objects` workload, small, into a directory of its own: the plugin decides
    //    what is written and what counts as a pass.
    let workload = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("workloads/objects.toml");
    let sets = [format!("target.uri=\"file://{}\"", dir.join("objects").display()), "params.count=8".to_string()];
    let session = Session::open(&workload, &sets, Some(7), Mode::Write, true, &Silent)?;
    let outcome = session.run(&mut (), &RunEnv::alone(cancel, Arc::new(Silent)))?;
    let report = session.report(&outcome);
    for line in report.lines() {
        println!("{line}");
    }
    // The same report as JSON, what `--json-report` writes.
    let json = report.to_json();
    println!("report: {} objects, {} bytes, exit code {}", json["objects"], json["bytes"], json["exit_code"]);
    std::process::exit(report.exit_code.into())
}
