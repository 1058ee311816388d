//! A sandbox key rotation as files on disk, and finishing or undoing one that was cut short.
//!
//! Rekey writes the new pair beside the old as `<id>.new` and `<id>.pub.new`, installs the new
//! public key in the sandbox, then commits: `<id>.new` is renamed over `<id>` (the single step
//! that decides which key is current), `<id>.pub` is rewritten from it and `<id>.pub.new` is
//! removed. Whatever instant a `kill -9` hits, the files left say how to recover: while
//! `<id>.new` exists the sandbox is asked which key it accepts, by logging in with each.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use km_core::atomic_file::{FileLock, write_atomic};
use km_core::id::SandboxId;
use km_core::keys::{KeyPair, PUBLIC_KEY_MODE};
use km_core::platform::{Liveness, Platform};
use km_core::record::{SandboxRecord, SandboxStore};

use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ssh_client::verify_login;
use crate::ui;

/// How long the repair waits for a key install still running in the sandbox.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The key files of one sandbox, current and pending.
pub(crate) struct KeyFiles {
    pub(crate) private: PathBuf,
    pub(crate) public: PathBuf,
    pub(crate) private_new: PathBuf,
    pub(crate) public_new: PathBuf,
}

impl KeyFiles {
    pub(crate) fn of(context: &Context, id: &SandboxId) -> Self {
        let private = context.paths.private_key(id);
        let public = context.paths.public_key(id);
        Self {
            private_new: with_suffix(&private, ".new"),
            public_new: with_suffix(&public, ".new"),
            private,
            public,
        }
    }

    fn pending(&self) -> bool {
        self.private_new.exists() || self.public_new.exists()
    }

    /// Removes the pending pair (a missing file is fine).
    pub(crate) fn discard_new(&self) -> io::Result<()> {
        for path in [&self.private_new, &self.public_new] {
            remove_if_present(path)?;
        }
        Ok(())
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Takes the sandbox's rotation lock, or `None` while another km process holds it.
pub(crate) fn try_lock(context: &Context, id: &SandboxId) -> CommandResult<Option<FileLock>> {
    let path = context.paths.rekey_lock(id);
    FileLock::try_acquire(&path).map_err(|e| {
        CommandError::user(format!("cannot take the rekey lock {}", path.display())).cause(e)
    })
}

/// Makes `pair` (already at `<id>.new`) the sandbox's current key on this machine.
pub(crate) fn commit(
    context: &Context,
    store: &dyn SandboxStore,
    id: &SandboxId,
    pair: &KeyPair,
) -> CommandResult<()> {
    let files = KeyFiles::of(context, id);
    let failed = |e: &dyn std::fmt::Display| {
        CommandError::user(format!(
            "the sandbox {id} has the new key but it could not be made current here"
        ))
        .cause(e.to_string())
        .hint(format!(
            "run `km vscode status {id}`: it finishes the rotation from {}",
            files.private_new.display()
        ))
    };
    if files.private_new.exists() {
        std::fs::rename(&files.private_new, &files.private).map_err(|e| failed(&e))?;
    }
    let public = format!("{}\n", pair.public_line().map_err(|e| failed(&e))?);
    write_atomic(&files.public, public.as_bytes(), PUBLIC_KEY_MODE).map_err(|e| failed(&e))?;
    remove_if_present(&files.public_new).map_err(|e| failed(&e))?;
    store.set_key_fingerprint(id, Some(&pair.fingerprint()))?;
    Ok(())
}

/// What [`recover`] did about a rotation that was cut short.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// There was none.
    NothingPending,
    /// The sandbox had the new key; the rotation is now complete here too.
    Finished,
    /// The sandbox still had the old key; the new one was discarded.
    Undone,
    /// The sandbox accepted neither key just now; the files were left for a later try.
    Undecided,
}

/// Finishes or undoes a rotation that a crash or `kill -9` cut short, by asking the sandbox
/// which key it accepts. Safe to call from any command that is about to use the key.
pub(crate) fn recover(
    context: &Context,
    store: &dyn SandboxStore,
    platform: &dyn Platform,
    record: &SandboxRecord,
) -> CommandResult<Recovery> {
    let id = &record.id;
    let files = KeyFiles::of(context, id);
    if !files.pending() {
        return Ok(Recovery::NothingPending);
    }
    // Another km rotating or repairing holds the lock: wait for it, then look again.
    let path = context.paths.rekey_lock(id);
    let _lock = FileLock::acquire(&path).map_err(|e| {
        CommandError::user(format!("cannot take the rekey lock {}", path.display())).cause(e)
    })?;
    if !files.pending() {
        return Ok(Recovery::NothingPending);
    }
    let discard = |files: &KeyFiles| {
        files.discard_new().map_err(|e| {
            CommandError::user(format!("cannot remove {}", files.private_new.display())).cause(e)
        })
    };
    if !files.private_new.exists() {
        // Killed after the decisive rename: only `.pub` is left to bring up to date.
        let current = KeyPair::read(&files.private).map_err(|e| {
            CommandError::user(format!("cannot read {}", files.private.display())).cause(e)
        })?;
        commit(context, store, id, &current)?;
        return Ok(Recovery::Finished);
    }
    let Ok(pending) = KeyPair::read(&files.private_new) else {
        // Keys are written whole or not at all, so an unreadable one was never pushed.
        discard(&files)?;
        return Ok(Recovery::Undone);
    };
    if platform.liveness(record)? != Liveness::Running {
        return Ok(Recovery::Undecided);
    }
    // Key installs run one at a time in the sandbox, so once this no-op has run, a push that a
    // killed rekey left in flight has finished (or was stopped) and the logins below see the
    // sandbox's settled state.
    if platform.exec(record, "true", SETTLE_TIMEOUT).is_err() {
        return Ok(Recovery::Undecided);
    }
    let user = platform.login_user(record);
    if verify_login(context, id, &files.private_new, &user).is_ok() {
        commit(context, store, id, &pending)?;
        return Ok(Recovery::Finished);
    }
    if verify_login(context, id, &files.private, &user).is_ok() {
        discard(&files)?;
        return Ok(Recovery::Undone);
    }
    Ok(Recovery::Undecided)
}

/// [`recover`], telling the operator what it did.
pub(crate) fn recover_and_report(
    context: &Context,
    store: &dyn SandboxStore,
    platform: &dyn Platform,
    record: &SandboxRecord,
) -> CommandResult<()> {
    let id = &record.id;
    match recover(context, store, platform, record)? {
        Recovery::NothingPending => {}
        Recovery::Finished => ui::status(&format!(
            "✓ Finished an interrupted rekey of {id}: the sandbox already had the new key"
        )),
        Recovery::Undone => ui::status(&format!(
            "✓ Undid an interrupted rekey of {id}: the sandbox still had the old key"
        )),
        Recovery::Undecided => ui::warn(&format!(
            "an interrupted rekey of {id} is pending and the sandbox accepted neither key just now; once it runs, `km vscode rekey {id}` settles it"
        )),
    }
    Ok(())
}

/// [`recover_and_report`] for a command the operator runs: waits for a rotation in progress.
pub(crate) fn settle(
    context: &Context,
    store: &dyn SandboxStore,
    platform: &dyn Platform,
    record: &SandboxRecord,
) -> CommandResult<()> {
    recover_and_report(context, store, platform, record)
}
