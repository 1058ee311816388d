//! `km create`: reads the profile and the alias, then makes the sandbox (`ops::provision`):
//! profile → ID → keypair → userdata → boot → pinned host key → record.
//!
//! The record is written first, as `starting`, naming this process as its creator, so a create
//! killed outright shows up in `km list` (as `failed` once its creator is gone) and `km destroy`
//! can remove it. Any failure, Ctrl-C, SIGTERM or SIGHUP rolls back everything made so far
//! (keys, record, sandbox, pins) and reports exactly what could not be removed.

use std::process::ExitCode;

use km_core::id::{Alias, SandboxId};

use crate::cli::CreateArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ops::provision::{Maker, Plan, make};

pub(crate) fn run(context: &Context, args: &CreateArgs) -> CommandResult<ExitCode> {
    let alias: Option<Alias> = args
        .alias
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: km_core::id::IdError| CommandError::user(e.to_string()))?;
    let profile =
        crate::ops::profile::load(&args.profile, &context.search_path()).map_err(|errors| {
            let mut error =
                CommandError::user(format!("{} is not a valid profile", args.profile.display()));
            for e in errors {
                error = error.cause(e);
            }
            error.hint(format!(
                "run `km validate {}` after fixing it",
                args.profile.display()
            ))
        })?;
    if args.remote {
        return crate::manager::create_remote(context, args, &profile, alias);
    }
    let id = SandboxId::generate(&profile.prefix).map_err(|e| CommandError::user(e.to_string()))?;
    let profile_path = args
        .profile
        .canonicalize()
        .unwrap_or_else(|_| args.profile.clone())
        .display()
        .to_string();
    make(
        context,
        &Plan {
            id: &id,
            alias: alias.as_ref(),
            profile: &profile,
            profile_path: &profile_path,
        },
        &Maker::Operator,
    )
}
