//! What km keeps on this machine for its operator: the name on their keys, and for each
//! sandbox its keypair files, Host entry and pinned host key, removed when the sandbox goes.

use km_core::id::{Operator, SandboxId};

use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::key_rotation::KeyFiles;
use crate::settings::Settings;
use crate::ssh_entries;
use crate::ui;

/// Removes what km keeps on this machine for a sandbox: key files (including rekey leftovers),
/// the Host entry and the pinned host key.
pub(crate) fn forget_operator_state(context: &Context, id: &SandboxId) -> CommandResult<()> {
    let files = KeyFiles::of(context, id);
    for path in [
        files.private,
        files.public,
        files.private_new,
        files.public_new,
        context.paths.rekey_lock(id),
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(
                    CommandError::user(format!("cannot remove {}", path.display())).cause(e),
                );
            }
        }
    }
    ssh_entries::remove_host(context, id)?;
    ssh_entries::unpin_host_key(context, id)?;
    Ok(())
}

/// Saves the operator name `km init --operator` gave, if any, and says which name this
/// machine's new keys carry. Returns whether the saved name changed.
pub(crate) fn name_operator(
    context: &Context,
    settings: &mut Settings,
    requested: Option<&Operator>,
) -> bool {
    let changed = requested.is_some() && requested != settings.operator.as_ref();
    if let Some(operator) = requested {
        settings.operator = Some(operator.clone());
    }
    ui::status(&format!(
        "✓ Operator: {} (your keys are marked km-<id>:{}; change it with km init --operator <name>)",
        settings.operator(context),
        settings.operator(context)
    ));
    changed
}
