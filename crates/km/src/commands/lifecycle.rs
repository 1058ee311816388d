//! `km stop`, `km resume`, `km lock`, `km unlock`.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use km_core::record::{LockHolder, Status};

use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ops::sandbox_handle::{SandboxHandle, lock_description};
use crate::ui;

pub(crate) fn stop(context: &Context, reference: &str) -> CommandResult<ExitCode> {
    let sandbox = SandboxHandle::open(context, reference)?;
    let record = &sandbox.record;
    sandbox.platform()?.stop(record)?;
    sandbox.store.set_status(&record.id, Status::Stopped)?;
    ui::status(&format!(
        "✓ Sandbox {} stopped (resume it with `km resume {}`)",
        record.id, record.id
    ));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn resume(context: &Context, reference: &str) -> CommandResult<ExitCode> {
    let sandbox = SandboxHandle::open(context, reference)?;
    let (store, record, platform) = (&sandbox.store, &sandbox.record, sandbox.platform()?);
    {
        let _spinner = ui::Spinner::start(&format!("resuming {}", record.id));
        platform.resume(record).map_err(|e| {
            CommandError::user(format!("sandbox {} failed to resume", record.id))
                .cause(e)
                .hint(platform.logs_hint(record))
        })?;
    }
    store.set_status(&record.id, Status::Running)?;
    ui::status(&format!("✓ Sandbox {} running", record.id));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn set_lock(
    context: &Context,
    reference: &str,
    locked: bool,
) -> CommandResult<ExitCode> {
    let SandboxHandle { store, record, .. } = SandboxHandle::open(context, reference)?;
    let id = &record.id;
    if locked && record.locked {
        ui::status(&format!(
            "Sandbox {id} is already locked by {}; `km unlock {id}` releases it",
            lock_description(&record)
        ));
        return Ok(ExitCode::SUCCESS);
    }
    if !locked && !record.locked {
        ui::status(&format!("Sandbox {id} is not locked"));
        return Ok(ExitCode::SUCCESS);
    }
    let holder = LockHolder {
        by: crate::settings::operator(context)?.to_string(),
        since: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    store.set_locked(id, locked.then_some(&holder))?;
    if !locked {
        ui::status(&format!(
            "✓ Sandbox {id} unlocked (it was locked by {})",
            lock_description(&record)
        ));
        return Ok(ExitCode::SUCCESS);
    }
    if locked {
        ui::status(&format!(
            "✓ Sandbox {} locked: destroy and rekey refuse it until `km unlock {}`",
            record.id, record.id
        ));
    } else {
        ui::status(&format!("✓ Sandbox {} unlocked", record.id));
    }
    Ok(ExitCode::SUCCESS)
}
