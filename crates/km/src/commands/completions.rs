//! `km completions <shell>` and `km man`: generated from the command-line definition itself,
//! so they can never disagree with `--help`.
//!
//! Completion is dynamic: the script a shell loads asks km itself (`COMPLETE=<shell> km …`)
//! what fits at the cursor, so subcommands and flags come from the clap definition, and sandbox
//! arguments from `km list` at that moment (IDs and aliases).

use std::io::Write;
use std::process::ExitCode;

use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell, CompletionsArgs};
use crate::context::Context;
use crate::error::{CommandError, CommandResult};

/// The variable that makes km answer a completion request instead of running a command.
pub(crate) const COMPLETE_VAR: &str = "COMPLETE";

pub(crate) fn completions(args: &CompletionsArgs) -> CommandResult<ExitCode> {
    let shell: &dyn EnvCompleter = match args.shell {
        CompletionShell::Bash => &Bash,
        CompletionShell::Zsh => &Zsh,
        CompletionShell::Fish => &Fish,
    };
    let mut script = Vec::new();
    shell
        .write_registration(COMPLETE_VAR, "km", "km", "km", &mut script)
        .map_err(|e| CommandError::user("cannot write the completion script").cause(e))?;
    emit(&script)
}

/// Every sandbox's ID and alias, for completing a `<sb>` argument; nothing when km is not set
/// up or its store cannot be read (completion must never fail loudly, or create files).
pub(crate) fn sandbox_candidates() -> Vec<CompletionCandidate> {
    let Ok(context) = Context::from_process() else {
        return Vec::new();
    };
    if !context.paths.config_file().exists() && !context.paths.store_file().exists() {
        return Vec::new();
    }
    let Ok(store) = context.store() else {
        return Vec::new();
    };
    let Ok(records) = store.list() else {
        return Vec::new();
    };
    let mut candidates = Vec::new();
    for record in records {
        let about = format!("{} {}", record.profile, record.status.as_str());
        if let Some(alias) = &record.alias {
            candidates.push(
                CompletionCandidate::new(alias.as_str()).help(Some(record.id.to_string().into())),
            );
        }
        candidates.push(CompletionCandidate::new(record.id.as_str()).help(Some(about.into())));
    }
    candidates
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
