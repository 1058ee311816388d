//! km's command-line front end: the only crate that prints.
//!
//! `run` parses arguments, builds the [`context::Context`] from the environment once, dispatches
//! to one file per command, and turns a [`error::CommandError`] into `error:`/`hint:` lines and
//! the exit status of its kind (1 failed, 2 usage, 3 no such sandbox, 4 not running, 5
//! credentials, 130 interrupted; the table is in docs/vscode.md).

mod cli;
mod commands;
mod context;
mod error;
mod interrupts;
mod key_rotation;
#[cfg(feature = "aws")]
mod lambda_package;
mod manager;
#[cfg(feature = "aws")]
mod manager_hand_off;
#[cfg(feature = "aws")]
mod manager_lambda;
mod manager_protocol;
mod ops;
mod platforms;
mod remote_request;
mod routed_store;
mod sandbox_candidates;
mod settings;
mod ssh_client;
mod ssh_entries;
mod ui;

use std::process::ExitCode;

use clap::Parser;

/// Runs km with the process's arguments and environment.
pub fn run() -> ExitCode {
    // A shell asking what completes the command line is answered, then km exits. Only km's own
    // protocol counts (`_KM_COMPLETE=<shell> km -- words…`, as the registered scripts call it):
    // the variable in an environment, or a shell name without `--`, never hijacks a command.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if commands::is_completion_request(std::env::var_os(commands::COMPLETE_VAR).as_deref(), &args) {
        clap_complete::CompleteEnv::with_factory(<cli::Cli as clap::CommandFactory>::command)
            .var(commands::COMPLETE_VAR)
            .complete();
    }
    // Lambda starts its custom runtime as `bootstrap`, without arguments and without a HOME.
    #[cfg(feature = "aws")]
    if manager_lambda::started_by_lambda(&args) {
        return match manager_lambda::serve() {
            Ok(code) => code,
            Err(error) => {
                ui::print_error(&error);
                ExitCode::from(error.exit_code())
            }
        };
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        // The agent is given its sandbox directory and needs nothing else from the environment.
        cli::Command::Agent(args) => commands::run_agent(&args),
        // Generated from the command line alone; they work without a HOME.
        cli::Command::Completions(args) => commands::completions(&args),
        cli::Command::Man => commands::man(),
        command => context::Context::from_process()
            .and_then(|context| commands::dispatch(command, &context)),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            ui::print_error(&error);
            ExitCode::from(error.exit_code())
        }
    }
}
