//! `km validate`: resolve a profile's inheritance and print it, or print every error.

use std::process::ExitCode;

use crate::cli::ValidateArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ui;

pub(crate) fn run(context: &Context, args: &ValidateArgs) -> CommandResult<ExitCode> {
    match crate::ops::profile::load(&args.profile, &context.search_path()) {
        Ok(profile) => {
            ui::data(profile.to_yaml().trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            let count = errors.len();
            let mut error = CommandError::user(format!(
                "{} is not a valid profile ({count} error{})",
                args.profile.display(),
                if count == 1 { "" } else { "s" }
            ));
            for e in errors {
                error = error.cause(e);
            }
            Err(error.hint(format!(
                "fix the lines above, then run `km validate {}` again",
                args.profile.display()
            )))
        }
    }
}
