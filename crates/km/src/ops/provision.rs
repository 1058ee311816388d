//! Making a sandbox and taking it back: the ID's keypair, the record, the platform's
//! provisioning, the host-key pin, and the rollback of all of it on failure or interrupt.
//! Used by `km create` and by the management component alike.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use km_core::id::{Alias, SandboxId};
use km_core::keys::{KeyPair, fingerprint_of_line, key_material};
use km_core::platform::{Platform, ProvisionRequest};
use km_core::profile::Profile;
use km_core::record::{Creator, NewSandbox, Resources, SandboxStore, Status};
use km_core::remote_script::{parse_probe, probe_script};
use km_core::userdata::UserData;
use km_local::process_tree::ProcessIdentity;

use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::interrupts::{INTERRUPTED_EXIT, Interrupts};
use crate::ops::operator_state::forget_operator_state;
use crate::platforms;
use crate::ssh_entries;
use crate::ui;

/// Who makes a sandbox: the operator's own km, or the platform's manager on their behalf.
pub(crate) enum Maker {
    /// `km create`: generates the keypair here and pins the host key here.
    Operator,
    /// The manager, for `km create --remote`: the operator's km made the keypair and sent its
    /// public line; the operator's km pins the host key once the sandbox runs.
    Manager {
        /// The request's `VSCodeSSHPubKey`.
        public_line: Option<String>,
        /// When the manager runs elsewhere (a Lambda invocation), the time it ends by at the
        /// latest (epoch ms): its process cannot be looked up from an operator's machine.
        works_until_ms: Option<u64>,
    },
}

/// Who makes the sandbox, as its `starting` record names it: this process, or a manager that
/// works until a known time.
fn creator(maker: &Maker) -> Option<Creator> {
    match maker {
        Maker::Manager {
            works_until_ms: Some(until),
            ..
        } => Some(Creator::Until { until_ms: *until }),
        _ => ProcessIdentity::current()
            .map(|ProcessIdentity { pid, started }| Creator::Process { pid, started }),
    }
}

/// Makes the sandbox `plan` describes, rolling everything back on failure or interrupt.
pub(crate) fn make(context: &Context, plan: &Plan<'_>, maker: &Maker) -> CommandResult<ExitCode> {
    let (id, profile, alias) = (plan.id, plan.profile, plan.alias);
    let platform = platforms::platform_for_substrate(context, &profile.substrate)?;
    platform.preflight(&profile.runtime())?;
    let store = platforms::open_store(context)?;
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let interrupts = Interrupts::hold()
        .map_err(|e| CommandError::user("cannot install km's signal handlers").cause(e))?;
    store.insert(&NewSandbox {
        id: id.clone(),
        alias: alias.cloned(),
        profile: profile.name.clone(),
        profile_path: plan.profile_path.to_owned(),
        platform: platform.name().into(),
        vscode_enabled: profile.vscode_enabled,
        created_at,
    })?;
    let result = store
        .set_resources(
            id,
            &Resources {
                creator: creator(maker),
                ..Resources::default()
            },
        )
        .map_err(CommandError::from)
        .and_then(|()| {
            build(
                context,
                store.as_ref(),
                platform.as_ref(),
                plan,
                maker,
                &interrupts,
            )
        });
    match result {
        Ok(()) => {
            ui::data(id.as_str());
            let name = alias.map_or_else(|| id.to_string(), ToString::to_string);
            if profile.vscode_enabled {
                ui::status(&format!(
                    "next: km vscode start {name}   (or: km shell {name})"
                ));
            } else {
                ui::status(&format!("next: km shell {name} -- uname -a"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            let error = roll_back(context, store.as_ref(), platform.as_ref(), id, maker, error);
            if interrupts.received() {
                ui::print_error(&error);
                return Ok(ExitCode::from(INTERRUPTED_EXIT));
            }
            Err(error)
        }
    }
}

/// Makes this operator's keypair for `id` in `~/.km/keys`; returns its fingerprint and public
/// line.
pub(crate) fn make_operator_key(
    context: &Context,
    id: &SandboxId,
) -> CommandResult<(String, String)> {
    let pair = KeyPair::generate(&id.operator_key_comment(&crate::settings::operator(context)?))
        .map_err(|e| CommandError::user(e.to_string()))?;
    pair.write(
        &context.paths.private_key(id),
        &context.paths.public_key(id),
    )
    .map_err(|e| CommandError::user(format!("cannot write the keypair for {id}")).cause(e))?;
    ui::status(&format!("✓ Keypair generated ({})", pair.fingerprint()));
    let line = pair
        .public_line()
        .map_err(|e| CommandError::user(e.to_string()))?;
    Ok((pair.fingerprint(), line))
}

/// Removes everything `build` may have made, and says truthfully what it could not remove.
fn roll_back(
    context: &Context,
    store: &dyn SandboxStore,
    platform: &dyn Platform,
    id: &SandboxId,
    maker: &Maker,
    error: CommandError,
) -> CommandError {
    let mut left_behind = Vec::new();
    match store.get(id) {
        Ok(Some(record)) => {
            if let Err(e) = platform.destroy(&record) {
                left_behind.push(format!("the sandbox itself ({e})"));
            }
        }
        Ok(None) => {}
        Err(e) => left_behind.push(format!("the sandbox, whose record could not be read ({e})")),
    }
    // The operator's own files are the operator's km's to remove, not the manager's.
    if matches!(maker, Maker::Operator)
        && let Err(e) = forget_operator_state(context, id)
    {
        left_behind.push(format!(
            "its local key files, Host entry or host key pin ({})",
            e.message
        ));
    }
    // The record goes last: while anything else is left, it is what lets destroy find it.
    if left_behind.is_empty()
        && let Err(e) = store.delete(id)
    {
        left_behind.push(format!("its record ({e})"));
    }
    if left_behind.is_empty() {
        return error.cause(format!(
            "nothing of sandbox {id} was left behind: no keys, record, directory or host entry"
        ));
    }
    error
        .cause(format!(
            "the rollback could not remove: {}",
            left_behind.join("; ")
        ))
        .hint(format!(
            "remove what is left with `km destroy {id} --yes --force` (km list shows it as failed)"
        ))
}

/// Turns a held-back Ctrl-C, SIGTERM or SIGHUP into a failure, which rolls the create back.
fn check_interrupts(interrupts: &Interrupts, id: &SandboxId) -> CommandResult<()> {
    if interrupts.received() {
        return Err(CommandError::user(format!(
            "km create was interrupted while creating {id}"
        )));
    }
    Ok(())
}

/// What `build` makes a sandbox from.
pub(crate) struct Plan<'a> {
    pub(crate) id: &'a SandboxId,
    pub(crate) alias: Option<&'a Alias>,
    pub(crate) profile: &'a Profile,
    /// Where the profile was read from, as recorded.
    pub(crate) profile_path: &'a str,
}

fn build(
    context: &Context,
    store: &dyn SandboxStore,
    platform: &dyn Platform,
    plan: &Plan<'_>,
    maker: &Maker,
    interrupts: &Interrupts,
) -> CommandResult<()> {
    let id = plan.id;
    let vscode_enabled = plan.profile.vscode_enabled;
    let public_line = if let Maker::Manager { public_line, .. } = maker {
        if let Some(line) = public_line.as_deref().filter(|_| vscode_enabled) {
            let fingerprint = fingerprint_of_line(line).map_err(|e| {
                CommandError::user(format!(
                    "the request's VSCodeSSHPubKey is not a usable key: {e}"
                ))
            })?;
            store.set_key_fingerprint(id, Some(&fingerprint))?;
        }
        public_line.clone().filter(|_| vscode_enabled)
    } else if vscode_enabled {
        let (fingerprint, line) = make_operator_key(context, id)?;
        store.set_key_fingerprint(id, Some(&fingerprint))?;
        Some(line)
    } else {
        None
    };
    let userdata = UserData {
        steps: platform.boot_steps(),
        sandbox_id: id.clone(),
        vscode_enabled,
        vscode_ssh_pub_key: public_line,
    }
    .render()
    .map_err(|e| CommandError::user(e.to_string()))?;
    check_interrupts(interrupts, id)?;
    let placement = {
        let _spinner = ui::Spinner::start(&format!("booting {id}"));
        // Recorded as soon as the platform knows it, so a create killed mid-boot can be undone.
        let placed = |placement: &serde_json::Value| {
            store
                .set_resources(id, &Resources::placed(creator(maker), placement))
                .map_err(|e| km_core::platform::PlatformError::Channel(e.to_string()))
        };
        platform
            .provision_placed(
                &ProvisionRequest {
                    id: id.clone(),
                    alias: plan.alias.cloned(),
                    userdata,
                    runtime: plan.profile.runtime(),
                },
                &placed,
            )
            .map_err(|e| CommandError::user(format!("sandbox {id} failed to boot")).cause(e))?
    };
    store.set_resources(id, &Resources::placed(creator(maker), &placement))?;
    check_interrupts(interrupts, id)?;
    let record = store.get(id)?.ok_or_else(|| {
        CommandError::user(format!(
            "sandbox {id} vanished from the store while it was created"
        ))
    })?;
    let probe = platform.exec(
        &record,
        &probe_script(&platform.sshd_check(), &platform.host_key_path(&record)),
        Duration::from_secs(10),
    );
    let host_key = parse_probe(&probe?.stdout)
        .host_key
        .and_then(|line| key_material(&line))
        .ok_or_else(|| {
            CommandError::user(format!("sandbox {id} booted without a readable host key"))
        })?;
    check_interrupts(interrupts, id)?;
    if matches!(maker, Maker::Operator) {
        ssh_entries::pin_host_key(context, id, &host_key)?;
        check_interrupts(interrupts, id)?;
    }
    store.set_status(id, Status::Running)?;
    ui::status(&format!("✓ Sandbox {id} running"));
    if matches!(maker, Maker::Operator) {
        ui::status("✓ Host key pinned");
    }
    Ok(())
}
