//! The `repatlas` command line: a thin layer over the library.
//!
//! Exit codes: 0 on success, 1 when the job failed on valid arguments (an
//! I/O or numerical failure), 2 on invalid input (arguments, files, models,
//! stimuli). Data goes to stdout, diagnostics to stderr.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
