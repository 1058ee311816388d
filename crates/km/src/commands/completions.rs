//! `km completions <shell>` and `km man`: generated from the command-line definition itself,
//! so they can never disagree with `--help`.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::{CommandError, CommandResult};

pub(crate) fn completions(args: &CompletionsArgs) -> CommandResult<ExitCode> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "km", &mut script);
    emit(&script)
}

pub(crate) fn man() -> CommandResult<ExitCode> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| CommandError::user("cannot render the man page").cause(e))?;
    emit(&page)
}

/// Writes generated text to stdout; a reader that went away is not an error.
fn emit(bytes: &[u8]) -> CommandResult<ExitCode> {
    let _ = std::io::stdout().lock().write_all(bytes);
    Ok(ExitCode::SUCCESS)
}
