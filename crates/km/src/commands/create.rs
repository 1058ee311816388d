//! `km create`: profile → ID → keypair → userdata → boot → pinned host key → record.
//! Any failure rolls back everything made so far: keys, record, sandbox directory, pins.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use km_core::id::{Alias, SandboxId};
use km_core::keys::{KeyPair, key_material};
use km_core::platform::Platform;
use km_core::profile::{Substrate, load_profile};
use km_core::record::{NewSandbox, SandboxStore, Status};
use km_core::remote_script::{parse_probe, probe_script};
use km_core::userdata::UserData;

use crate::cli::CreateArgs;
use crate::commands::destroy::forget_operator_state;
use crate::context::Context;
use crate::error::{CommandError, CommandResult, not_yet};
use crate::ssh_entries;
use crate::ui;

pub(crate) fn run(context: &Context, args: &CreateArgs) -> CommandResult<ExitCode> {
    let alias: Option<Alias> = args
        .alias
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: km_core::id::IdError| CommandError::user(e.to_string()))?;
    let profile = load_profile(&args.profile, &context.search_path()).map_err(|errors| {
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
        return Err(not_yet(
            "km create --remote",
            "creating through the platform's management component",
        )
        .hint(format!("km create {}", args.profile.display())));
    }
    if profile.substrate == Substrate::Ec2 {
        return Err(CommandError::user(format!(
            "profile {} needs the AWS platform, which is not part of this km build",
            profile.name
        ))
        .hint("use a profile with `spec.runtime.substrate: local`, e.g. `km create profiles/default.yaml`"));
    }
    let store = context.store()?;
    let platform = context.platform()?;
    let id = SandboxId::generate(&profile.prefix).map_err(|e| CommandError::user(e.to_string()))?;
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let profile_path = args
        .profile
        .canonicalize()
        .unwrap_or_else(|_| args.profile.clone())
        .display()
        .to_string();
    store.insert(&NewSandbox {
        id: id.clone(),
        alias: alias.clone(),
        profile: profile.name.clone(),
        profile_path,
        platform: platform.name().into(),
        vscode_enabled: profile.vscode_enabled,
        created_at,
    })?;
    let result = build(context, &store, &platform, &id, profile.vscode_enabled);
    match result {
        Ok(()) => {
            ui::data(id.as_str());
            let name = alias
                .as_ref()
                .map_or_else(|| id.to_string(), ToString::to_string);
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
            if let Ok(Some(record)) = store.get(&id) {
                let _ = platform.destroy(&record);
            }
            let _ = forget_operator_state(context, &id);
            let _ = store.delete(&id);
            Err(error.cause(format!(
                "nothing of sandbox {id} was left behind: no keys, record, directory or host entry"
            )))
        }
    }
}

fn build(
    context: &Context,
    store: &impl SandboxStore,
    platform: &impl Platform,
    id: &SandboxId,
    vscode_enabled: bool,
) -> CommandResult<()> {
    let public_line = if vscode_enabled {
        let pair =
            KeyPair::generate(&id.key_comment()).map_err(|e| CommandError::user(e.to_string()))?;
        pair.write(
            &context.paths.private_key(id),
            &context.paths.public_key(id),
        )
        .map_err(|e| CommandError::user(format!("cannot write the keypair for {id}")).cause(e))?;
        store.set_key_fingerprint(id, Some(&pair.fingerprint()))?;
        ui::status(&format!("✓ Keypair generated ({})", pair.fingerprint()));
        Some(
            pair.public_line()
                .map_err(|e| CommandError::user(e.to_string()))?,
        )
    } else {
        None
    };
    let userdata = UserData {
        sandbox_id: id.clone(),
        vscode_enabled,
        vscode_ssh_pub_key: public_line,
    }
    .render()
    .map_err(|e| CommandError::user(e.to_string()))?;
    let resources = {
        let _spinner = ui::Spinner::start(&format!("booting {id}"));
        platform
            .provision(id, &userdata)
            .map_err(|e| CommandError::user(format!("sandbox {id} failed to boot")).cause(e))?
    };
    store.set_resources(id, &resources)?;
    let record = store.get(id)?.ok_or_else(|| {
        CommandError::user(format!(
            "sandbox {id} vanished from the store while it was created"
        ))
    })?;
    let probe = platform.exec(
        &record,
        &probe_script(&platform.sshd_check(), &platform.host_key_path(&record)),
        Duration::from_secs(10),
    )?;
    let host_key = parse_probe(&probe.stdout)
        .host_key
        .and_then(|line| key_material(&line))
        .ok_or_else(|| {
            CommandError::user(format!("sandbox {id} booted without a readable host key"))
        })?;
    ssh_entries::pin_host_key(context, id, &host_key)?;
    store.set_status(id, Status::Running)?;
    ui::status(&format!("✓ Sandbox {id} running (host key pinned)"));
    Ok(())
}
