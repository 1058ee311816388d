//! What a build without the `aws` feature says when the AWS platform is asked for.

use crate::context::Context;
use crate::error::{CommandError, CommandResult};

/// The command that builds a km with the AWS platform.
pub(crate) const BUILD_WITH_AWS: &str = "cargo build --release --features aws";

pub(crate) fn not_built() -> CommandError {
    CommandError::user("this km was built without the AWS platform (the `aws` feature)")
        .hint(format!("build one that has it: {BUILD_WITH_AWS}"))
}

pub(super) fn init(
    _context: &Context,
    _args: &super::init_options::AwsInitOptions,
    _operator: Option<&km_core::id::Operator>,
    _sidecars: bool,
) -> CommandResult<std::process::ExitCode> {
    Err(not_built())
}

pub(super) fn manager_manifest(
    _context: &Context,
) -> CommandResult<Option<crate::manager_protocol::Manifest>> {
    Err(not_built())
}

pub(super) fn pending_creates(_context: &Context) -> Result<Vec<km_core::id::SandboxId>, String> {
    Ok(Vec::new())
}

pub(super) fn pending_create_requests(_context: &Context) -> Vec<super::PendingCreate> {
    Vec::new()
}
