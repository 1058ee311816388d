//! One sandbox as a command works on it: its store and record, found once from what the
//! operator typed, its platform, looked up when first needed (so a record whose platform this
//! build lacks can still be refused as locked), and the gates commands share.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use km_core::id::SandboxId;
use km_core::platform::{Liveness, Platform};
use km_core::record::{SandboxRecord, SandboxStore};

use crate::context::Context;
use crate::error::{CommandError, CommandResult, ErrorKind};
use crate::platforms;
use crate::ui;

/// The sandbox a command names, with where its record lives and what runs it.
pub(crate) struct SandboxHandle<'a> {
    context: &'a Context,
    /// The store the record came from.
    pub(crate) store: Box<dyn SandboxStore>,
    /// The record, as read when the handle was opened.
    pub(crate) record: SandboxRecord,
    platform: OnceLock<Arc<dyn Platform>>,
}

impl<'a> SandboxHandle<'a> {
    /// The sandbox `reference` (ID, alias or list number) names.
    pub(crate) fn open(context: &'a Context, reference: &str) -> CommandResult<Self> {
        let store = platforms::open_store(context)?;
        let record = context.resolve(store.as_ref(), reference)?;
        Ok(Self {
            context,
            store,
            record,
            platform: OnceLock::new(),
        })
    }

    /// The sandbox's ID.
    pub(crate) fn id(&self) -> &SandboxId {
        &self.record.id
    }

    /// The platform the sandbox runs on.
    pub(crate) fn platform(&self) -> CommandResult<&dyn Platform> {
        if let Some(platform) = self.platform.get() {
            return Ok(platform.as_ref());
        }
        let found = platforms::platform_for(self.context, &self.record)?;
        Ok(self.platform.get_or_init(|| found).as_ref())
    }

    /// Fails, naming `km resume`, unless the sandbox runs.
    pub(crate) fn ensure_running(&self) -> CommandResult<()> {
        ensure_running(self.platform()?, &self.record)
    }

    /// Fails, naming `km unlock`, when the sandbox is locked and `force` was not given.
    pub(crate) fn ensure_unlocked(&self, force: bool) -> CommandResult<()> {
        let id = self.id();
        if self.record.locked && !force {
            return Err(CommandError::of(
                ErrorKind::Refused,
                format!(
                    "sandbox {id} is locked by {}",
                    lock_description(&self.record)
                ),
            )
            .hint(format!("km unlock {id}, or pass --force")));
        }
        Ok(())
    }
}

/// Fails, naming `km resume`, unless `record`'s sandbox runs on `platform`.
pub(crate) fn ensure_running(platform: &dyn Platform, record: &SandboxRecord) -> CommandResult<()> {
    if platform.liveness(record)? == Liveness::Running {
        return Ok(());
    }
    let id = &record.id;
    Err(CommandError::of(
        ErrorKind::NotRunning,
        format!("sandbox {id} is not running"),
    )
    .hint(format!("km resume {id}")))
}

/// `alice@laptop since 2026-11-30T21:49:00Z`, or what is known of an older km's lock.
pub(crate) fn lock_description(record: &SandboxRecord) -> String {
    match &record.lock_holder {
        Some(holder) => format!(
            "{} since {}",
            ui::printable(&holder.by),
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(holder.since))
        ),
        None => "an older km that did not record who".to_owned(),
    }
}
