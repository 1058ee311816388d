//! `km stop`, `km resume`, `km lock`, `km unlock`.

use std::process::ExitCode;

use km_core::record::Status;

use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ui;

pub(crate) fn stop(context: &Context, reference: &str) -> CommandResult<ExitCode> {
    let store = context.store()?;
    let record = context.resolve(store.as_ref(), reference)?;
    context.platform_for(&record)?.stop(&record)?;
    store.set_status(&record.id, Status::Stopped)?;
    ui::status(&format!(
        "✓ Sandbox {} stopped (resume it with `km resume {}`)",
        record.id, record.id
    ));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn resume(context: &Context, reference: &str) -> CommandResult<ExitCode> {
    let store = context.store()?;
    let record = context.resolve(store.as_ref(), reference)?;
    let platform = context.platform_for(&record)?;
    {
        let _spinner = ui::Spinner::start(&format!("resuming {}", record.id));
        platform.resume(&record).map_err(|e| {
            CommandError::user(format!("sandbox {} failed to resume", record.id))
                .cause(e)
                .hint(format!(
                    "its logs are in {}",
                    context.paths.sandbox_dir(&record.id).join("log").display()
                ))
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
    let store = context.store()?;
    let record = context.resolve(store.as_ref(), reference)?;
    store.set_locked(&record.id, locked)?;
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
