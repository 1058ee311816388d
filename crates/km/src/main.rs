//! The `km` binary: parses the command line, runs the command, renders errors.

use std::process::ExitCode;

fn main() -> ExitCode {
    km::run()
}
