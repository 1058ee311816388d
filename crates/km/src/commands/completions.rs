//! `km completions <shell>` and `km man`: generated from the command-line definition itself,
//! so they can never disagree with `--help`.
//!
//! Completion is dynamic: the script a shell loads asks km itself (`COMPLETE=<shell> km …`)
//! what fits at the cursor, so subcommands and flags come from the clap definition, and sandbox
//! arguments from `km list` at that moment (IDs and aliases).

use std::io::Write;
use std::process::ExitCode;

use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell, CompletionsArgs};
use crate::error::{CommandError, CommandResult};

/// The variable that makes km answer a completion request instead of running a command. It is
/// km's own: a generic `COMPLETE` set for another tool must not change what km does.
pub(crate) const COMPLETE_VAR: &str = "_KM_COMPLETE";

/// Whether this process was started by a registered completion script: the variable names a
/// shell km completes for, and the words to complete follow a `--` right after the program.
pub(crate) fn is_completion_request(
    var: Option<&std::ffi::OsStr>,
    args: &[std::ffi::OsString],
) -> bool {
    let shell_named = var.is_some_and(|v| matches!(v.to_str(), Some("bash" | "zsh" | "fish")));
    shell_named && args.get(1).is_some_and(|a| a == "--")
}

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

#[cfg(test)]
mod tests {
    use super::is_completion_request;
    use std::ffi::{OsStr, OsString};

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_the_registered_protocol_asks_for_completion() {
        let bash = Some(OsStr::new("bash"));
        assert!(is_completion_request(
            bash,
            &args(&["km", "--", "km", "li"])
        ));
        assert!(!is_completion_request(bash, &args(&["km", "list"])));
        assert!(!is_completion_request(
            Some(OsStr::new("1")),
            &args(&["km", "--", "km"])
        ));
        assert!(!is_completion_request(None, &args(&["km", "--", "km"])));
    }
}
