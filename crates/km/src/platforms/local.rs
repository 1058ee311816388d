//! The local provider: sandboxes as supervised, isolated process trees on this machine
//! (`km-local`).

use std::sync::Arc;

use km_core::platform::Platform;
use km_local::platform::LocalPlatform;
use km_local::sshd::find_tools;

use crate::context::{Context, current_user, install_hint};
use crate::error::CommandResult;

/// The local platform, from what this process found on the machine.
pub(super) fn platform(context: &Context) -> CommandResult<Arc<dyn Platform>> {
    // Only booting a sandbox needs sshd; listing, stopping or destroying one does not.
    let tools =
        find_tools(context.sshd_override.as_deref(), Some(&context.path_var)).map_err(|e| {
            if context.sshd_override.is_some() {
                format!("{e}; KM_SSHD must name an executable sshd by absolute path")
            } else {
                format!("{e}; {}", install_hint())
            }
        });
    let bwrap =
        km_local::isolation::find_bwrap(context.bwrap_override.as_deref(), Some(&context.path_var));
    Ok(Arc::new(LocalPlatform::new(
        context.paths.clone(),
        context.km_exe.clone(),
        tools,
        context.path_var.clone(),
        current_user(),
        bwrap,
    )))
}
