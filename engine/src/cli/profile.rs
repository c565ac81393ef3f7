//! `dgen-engine profile`: a data sample measured, its `[data]` table (or the JSON of it) on stdout.

use super::args::ProfileArgs;
use super::{install_cancel, lib_error, Failure};
use crate::terminal::Progress;
use dgen_engine::generator::sample;

pub fn run(args: ProfileArgs) -> Result<(), Failure> {
    let cancel = install_cancel();
    let files = sample::files(&args.paths).map_err(lib_error)?;
    let mut bar = Progress::new(files.iter().map(|f| f.1).sum(), !args.quiet).reading();
    let spec = sample::ProfileSpec { files, unit: args.unit, memory: args.memory as usize };
    let start = std::time::Instant::now();
    let measured =
        sample::scan(&spec, &mut |b| dgen_engine::pipeline::executor::Observer::progress(&mut bar, b), &cancel)
            .map_err(lib_error)?;
    bar.finish();
    let secs = start.elapsed().as_secs_f64();
    if args.json {
        let mut j = measured.json(&args.paths);
        j["seconds"] = serde_json::json!(secs);
        println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
        return Ok(());
    }
    let names: Vec<String> =
        args.paths.iter().map(|p| dgen_engine::untrusted::sanitize(&p.display().to_string(), 4000)).collect();
    for line in measured.summary_lines(&names, secs) {
        println!("{line}");
    }
    print!("{}", measured.data_toml());
    Ok(())
}
