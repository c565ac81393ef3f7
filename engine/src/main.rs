//! The `dgen-engine` command: parses the command line, calls the library, maps errors to exit codes
//! (0 success, 1 a check failed, 2 usage or input error, 3 I/O error, 4 a plugin fault, 130
//! interrupted) and prints. Each command is a file of `cli/`; `terminal.rs` draws the progress bar
//! and prints the library's events above it.

mod cli;
mod terminal;

use clap::Parser;
use cli::args::{Cli, Command, PluginCommand};
use dgen_engine::plugin::host::Mode;
use std::process::ExitCode;
use terminal::say;

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
        Command::Gen(args) => cli::gen::run(args),
        Command::Run(args) => cli::run::run(args, Mode::Write),
        Command::Verify(args) => cli::run::run(args, Mode::Verify),
        Command::Plugin(PluginCommand::Build { dir, output }) => cli::plugin::build(&dir, output.as_deref()),
        Command::Plugin(PluginCommand::Inspect { file }) => cli::plugin::inspect(&file),
        Command::Profile(args) => cli::profile::run(args),
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
