//! Destroying a sandbox: what its platform holds, then (on the operator's machine) the keys,
//! Host entry and pin kept for it, then its record, so a failure part-way leaves a record that
//! `km destroy` can be run on again.

use crate::context::Context;
use crate::error::CommandResult;
use crate::ops::operator_state::forget_operator_state;
use crate::ops::sandbox_handle::SandboxHandle;

/// What this machine keeps for the sandbox besides its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OperatorState {
    /// The operator's own machine: its key files, Host entry and pinned host key go too.
    Forget,
    /// A management component: it keeps nothing of the operator's.
    None,
}

/// Destroys `sandbox`; the gates (lock, confirmation) are the caller's.
pub(crate) fn destroy(
    context: &Context,
    sandbox: &SandboxHandle<'_>,
    operator_state: OperatorState,
) -> CommandResult<()> {
    let id = sandbox.id();
    sandbox.platform()?.destroy(&sandbox.record)?;
    if operator_state == OperatorState::Forget {
        forget_operator_state(context, id)?;
    }
    sandbox.store.delete(id)?;
    Ok(())
}
