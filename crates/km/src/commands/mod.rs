//! One module per command; `dispatch` is the only place that knows them all.

mod agent;
mod completions;
pub(crate) mod create;
pub(crate) mod destroy;
mod doctor;
pub(crate) mod init;
pub(crate) mod lifecycle;
mod list;
mod proxy;
mod shell;
mod validate;
pub(crate) mod vscode;

use std::process::ExitCode;

use crate::cli::Command;
use crate::context::Context;
use crate::error::CommandResult;

pub(crate) fn dispatch(command: Command, context: &Context) -> CommandResult<ExitCode> {
    match command {
        Command::Init(args) => init::run(context, &args),
        Command::Validate(args) => validate::run(context, &args),
        Command::Create(args) => create::run(context, &args),
        Command::List(args) => list::run(context, &args),
        Command::Destroy(args) => destroy::run(context, &args),
        Command::Stop(args) => lifecycle::stop(context, &args.sandbox),
        Command::Resume(args) => lifecycle::resume(context, &args.sandbox),
        Command::Lock(args) => lifecycle::set_lock(context, &args.sandbox, true),
        Command::Unlock(args) => lifecycle::set_lock(context, &args.sandbox, false),
        Command::Shell(args) => shell::run(context, &args),
        Command::Vscode(command) => vscode::dispatch(context, command),
        Command::Proxy(args) => proxy::run(context, &args),
        Command::Doctor(args) => doctor::run(context, &args),
        Command::Completions(args) => completions::completions(&args),
        Command::Man => completions::man(),
        Command::Agent(args) => agent::run(&args),
        Command::Manager(crate::cli::ManagerCommand::Manifest) => {
            crate::manager::print_manifest(context)
        }
        Command::Manager(crate::cli::ManagerCommand::Serve) => crate::manager::serve(context),
    }
}

pub(crate) fn run_agent(args: &crate::cli::AgentArgs) -> CommandResult<ExitCode> {
    agent::run(args)
}

pub(crate) fn completions(args: &crate::cli::CompletionsArgs) -> CommandResult<ExitCode> {
    completions::completions(args)
}

pub(crate) use completions::{COMPLETE_VAR, is_completion_request};

pub(crate) fn man() -> CommandResult<ExitCode> {
    completions::man()
}
