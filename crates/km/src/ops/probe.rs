//! The pre-flight probe of a sandbox over its command channel (sshd, `authorized_keys`, host
//! key), and pinning the host key it reads when this machine has none yet.

use std::time::Duration;

use km_core::keys::key_material;
use km_core::platform::Platform;
use km_core::record::SandboxRecord;
use km_core::remote_script::{Probe, parse_probe, probe_completed, probe_script};

use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::platforms;

/// How long a pre-flight script may run in the sandbox.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the pre-flight probe over the command channel.
pub(crate) fn probe(platform: &dyn Platform, record: &SandboxRecord) -> CommandResult<Probe> {
    let script = probe_script(&platform.sshd_check(), &platform.host_key_path(record));
    let output = platform.exec(record, &script, PROBE_TIMEOUT)?;
    // A probe that did not run to its end says nothing about the sandbox: never read its
    // silence as "VS Code is not enabled".
    if output.timed_out || !probe_completed(&output.stdout) {
        let id = &record.id;
        return Err(CommandError::user(format!(
            "could not check sandbox {id}: the probe over its command channel {}",
            if output.timed_out {
                format!("timed out after {} s", PROBE_TIMEOUT.as_secs())
            } else {
                "ended without its report".to_owned()
            }
        ))
        .cause(output.stderr.trim().to_owned())
        .hint(format!(
            "try again; if it persists: km stop {id} && km resume {id}"
        )));
    }
    Ok(parse_probe(&output.stdout))
}

/// Reads the sandbox's host key over its command channel and pins it, if this machine has no
/// pin for it yet (after the management component made it).
pub(crate) fn pin_from_sandbox(context: &Context, record: &SandboxRecord) -> CommandResult<()> {
    let platform = platforms::platform_for(context, record)?;
    let found = probe(platform.as_ref(), record)?;
    pin_if_unpinned(context, record, &found)
}

/// Pins the host key the probe read over the platform's authenticated command channel, when
/// this machine has none for the sandbox yet (a second operator's first rekey).
pub(crate) fn pin_if_unpinned(
    context: &Context,
    record: &SandboxRecord,
    found: &Probe,
) -> CommandResult<()> {
    let id = &record.id;
    if crate::ssh_entries::pinned_host_key(context, id).is_some() {
        return Ok(());
    }
    let Some(host_key) = found.host_key.as_deref().and_then(key_material) else {
        return Err(CommandError::user(format!(
            "sandbox {id} has no readable host key, so this machine cannot pin it"
        ))
        .hint(format!("km vscode status {id}")));
    };
    crate::ssh_entries::pin_host_key(context, id, &host_key)?;
    crate::ui::status(
        "✓ Host key pinned on this machine (read over the sandbox's command channel)",
    );
    Ok(())
}
