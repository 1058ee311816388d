//! What `--remote` sends, on every platform: the create request with the keypair it carries
//! made here, request IDs, the one-key-line rule both sides apply, and how the operator's km
//! ends a create a manager made (the host key pinned here).

use std::process::ExitCode;

use km_core::id::{Alias, SandboxId};
use km_core::profile::Profile;

use crate::cli::CreateArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::manager_protocol::VSCODE_KEY_FIELD;
use crate::ops::provision::make_operator_key;
use crate::platforms;
use crate::ui;

/// A request's ID: its kind, the sandbox, and the time, so queue order is request order.
pub(crate) fn request_id(id: &SandboxId, kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{kind}-{id}-{nanos}")
}

/// Refuses anything but exactly one `ssh-ed25519` public key line: a newline in a comment
/// would install a second key.
pub(crate) fn single_key_line(line: &str) -> Result<(), String> {
    km_core::keys::parse_public_line(line)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A create request for `profile`, with the keypair it carries made here: the sandbox's ID,
/// the request's ID and the request.
pub(crate) fn create_request(
    context: &Context,
    args: &CreateArgs,
    profile: &Profile,
    alias: Option<Alias>,
) -> CommandResult<(SandboxId, String, serde_json::Value)> {
    let id = SandboxId::generate(&profile.prefix).map_err(|e| CommandError::user(e.to_string()))?;
    let public_line = if profile.vscode_enabled {
        Some(make_operator_key(context, &id)?.1)
    } else {
        None
    };
    if let Some(line) = &public_line {
        single_key_line(line).map_err(|why| {
            CommandError::user(format!(
                "the public key made for {id} is not one ssh-ed25519 line"
            ))
            .cause(why)
        })?;
    }
    let request_id = request_id(&id, "create");
    let mut request = serde_json::json!({
        "request_id": request_id,
        "sandbox_id": id,
        "alias": alias,
        "profile": profile.to_yaml(),
        "profile_path": args
            .profile
            .canonicalize()
            .unwrap_or_else(|_| args.profile.clone())
            .display()
            .to_string(),
    });
    request[VSCODE_KEY_FIELD] = serde_json::json!(public_line);
    Ok((id, request_id, request))
}

/// After a manager reported `id` made: its host key is pinned here (read over the platform's
/// command channel), and the operator is told what comes next.
pub(crate) fn created_remotely(
    context: &Context,
    id: &SandboxId,
    profile: &Profile,
) -> CommandResult<ExitCode> {
    ui::status(&format!(
        "✓ Sandbox {id} created by the management component"
    ));
    if profile.vscode_enabled {
        let store = platforms::open_store(context)?;
        let record = store.get(id)?.ok_or_else(|| {
            CommandError::user(format!(
                "the management component reported {id} made, but it has no record"
            ))
            .hint("km list")
        })?;
        crate::ops::probe::pin_from_sandbox(context, &record)?;
    }
    ui::data(id.as_str());
    if profile.vscode_enabled {
        ui::status(&format!("next: km vscode start {id}"));
    }
    Ok(ExitCode::SUCCESS)
}
