//! Crash-safe file replacement and cross-process advisory locks.
//!
//! A reader never sees a half-written file: content goes to a temp file in the target's own
//! directory, is fsynced, gets its final mode, and is renamed over the target. Edits that read
//! then write hold an advisory lock for the whole read-modify-write, so concurrent km processes
//! cannot lose each other's changes. A temp file stays locked by its writer, so one left by a
//! killed writer is recognised, and removed, by the next write in that directory.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Every temp file km writes starts with this.
pub const TEMP_PREFIX: &str = ".km-tmp-";
/// A temp file whose writer is gone is removed once it is at least this old, so a writer that
/// has created its file but not locked it yet is never raced.
const STALE_TEMP_AGE: Duration = Duration::from_secs(5);

/// Creates `dir` (and parents) if needed and forces its mode, whatever the umask or a
/// previous mode was.
pub fn ensure_private_dir(dir: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let current = fs::metadata(dir)?.permissions().mode() & 0o7777;
    if current != mode {
        fs::set_permissions(dir, Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Replaces `path` with `contents`, atomically, leaving it with exactly `mode`.
///
/// A leftover file with a looser mode is never reused: the temp file gets `mode` before any
/// byte is written, and the rename replaces the old inode.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_dir(path);
    remove_stale_temps(&dir);
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(&dir)?;
    // Held until the temp file is renamed or dropped: the mark of a live writer.
    temp.as_file().lock()?;
    // The umask may have narrowed the mode at creation; set it exactly.
    temp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(&dir);
    Ok(())
}

/// Removes km temp files in `dir` whose writer is gone (nobody holds their lock) and that are
/// old enough not to be a writer's brand-new file. Failures are left for the next write.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let is_temp = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(TEMP_PREFIX));
        if !is_temp {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let old_enough = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age >= STALE_TEMP_AGE);
        if old_enough && file.try_lock().is_ok() && fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Why km will not replace a file: replacing it would silently change something the user
/// set up (its owner, its read-only protection, or a hard link shared with another name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RefusedReplace {
    /// The file.
    pub path: String,
    /// What replacing it would change.
    pub reason: String,
    /// What the user can do.
    pub hint: String,
}

/// Refuses to replace `path` when that would change its owner, undo its read-only protection
/// or split its hard links.
fn check_replaceable(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let shown = path.display().to_string();
    let refuse = |reason: String, hint: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            RefusedReplace {
                path: shown.clone(),
                reason,
                hint,
            },
        ))
    };
    let own_uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != own_uid {
        return refuse(
            format!(
                "it is owned by uid {}, not by you (uid {own_uid}); rewriting it would make it yours",
                meta.uid()
            ),
            format!("give it to yourself first: chown {own_uid} {shown}"),
        );
    }
    if meta.permissions().mode() & 0o200 == 0 {
        return refuse(
            "it is read-only (its owner has no write permission); km will not override that".into(),
            format!("make it writable: chmod u+w {shown}"),
        );
    }
    if meta.nlink() > 1 {
        return refuse(
            format!(
                "it has {} hard links; a rewrite would stop sharing it with the other names",
                meta.nlink()
            ),
            format!(
                "replace the hard link with a symbolic link to the shared file (km writes through symlinks): ln -sf <shared file> {shown}"
            ),
        );
    }
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename durable; failure only weakens durability, never correctness.
fn sync_dir(dir: &Path) {
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// An exclusive advisory lock held until dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Blocks until the lock file at `path` (created 0600 if missing) is exclusively ours.
    pub fn acquire(path: &Path) -> io::Result<Self> {
        let file = Self::open(path)?;
        file.lock()?;
        Ok(Self { file })
    }

    /// Takes the lock at `path` if nobody holds it; `None` when someone does.
    pub fn try_acquire(path: &Path) -> io::Result<Option<Self>> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

impl FileLock {
    fn open(path: &Path) -> io::Result<File> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Follows symlinks to the file that really holds the content, so a symlinked config is
/// written through to its target instead of being replaced by a regular file.
pub fn resolve_symlinks(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current)?;
                current = if target.is_absolute() {
                    target
                } else {
                    parent_dir(&current).join(target)
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "too many levels of symbolic links at {}",
        path.display()
    )))
}

/// Reads, edits and rewrites a file under `lock_path`, keeping its mode (`new_mode` if new).
///
/// `edit` receives the current bytes (`None` when the file does not exist) and returns the new
/// bytes, or `None` to leave the file exactly as it is. Errors from `edit` leave it untouched.
/// A missing file that would be created empty stays missing, and so does its directory. A file
/// that [`RefusedReplace`] would describe is left untouched with that error.
pub fn edit_locked<E>(
    lock_path: &Path,
    path: &Path,
    new_mode: u32,
    edit: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
) -> Result<bool, E>
where
    E: From<io::Error>,
{
    let _lock = FileLock::acquire(lock_path)?;
    let target = resolve_symlinks(path)?;
    let current = match fs::read(&target) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let existing = match fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let mode = existing
        .as_ref()
        .map_or(new_mode, |meta| meta.permissions().mode() & 0o7777);
    let Some(updated) = edit(current.as_deref())? else {
        return Ok(false);
    };
    let unchanged = match current.as_deref() {
        Some(current) => current == updated.as_slice(),
        None => updated.is_empty(),
    };
    if unchanged {
        return Ok(false);
    }
    if let Some(meta) = &existing {
        check_replaceable(&target, meta)?;
    }
    if let Some(parent) = target.parent()
        && !parent.exists()
    {
        ensure_private_dir(parent, 0o700)?;
    }
    write_atomic(&target, &updated, mode)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_in(dir: &Path) -> PathBuf {
        dir.join("edit.lock")
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn an_edit_that_yields_nothing_creates_neither_file_nor_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".ssh/config");
        let changed =
            edit_locked::<io::Error>(&lock_in(dir.path()), &path, 0o600, |_| Ok(Some(Vec::new())))
                .unwrap();
        assert!(!changed);
        assert!(!dir.path().join(".ssh").exists());
    }

    #[test]
    fn read_only_and_hard_linked_files_are_refused_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let read_only = dir.path().join("ro");
        fs::write(&read_only, b"keep").unwrap();
        set_mode(&read_only, 0o444);
        let linked = dir.path().join("linked");
        fs::write(&linked, b"shared").unwrap();
        fs::hard_link(&linked, dir.path().join("other-name")).unwrap();
        for (path, before) in [(&read_only, &b"keep"[..]), (&linked, &b"shared"[..])] {
            let error = edit_locked::<io::Error>(&lock_in(dir.path()), path, 0o600, |_| {
                Ok(Some(b"new".to_vec()))
            })
            .unwrap_err();
            let refused = error.get_ref().unwrap().downcast_ref::<RefusedReplace>();
            assert!(refused.is_some(), "{error}");
            assert_eq!(fs::read(path).unwrap(), before);
        }
        assert_eq!(
            fs::metadata(&linked).unwrap().nlink(),
            2,
            "the link is not split"
        );
    }

    #[test]
    fn a_file_owned_by_someone_else_is_refused_when_we_can_tell() {
        let dir = tempfile::tempdir().unwrap();
        // As root (CI), a file handed to another uid; as anyone else, a file root owns, which
        // this process could not write either, so only the owner check gives this message.
        let (path, owner) = if nix::unistd::geteuid().is_root() {
            let path = dir.path().join("config");
            fs::write(&path, b"theirs").unwrap();
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            (path, 65534)
        } else {
            (std::path::PathBuf::from("/etc/passwd"), 0)
        };
        let before = fs::read(&path).unwrap();
        let error = edit_locked::<io::Error>(&lock_in(dir.path()), &path, 0o600, |_| {
            Ok(Some(b"ours".to_vec()))
        })
        .unwrap_err();
        assert!(
            error.to_string().contains(&format!("owned by uid {owner}")),
            "{error}"
        );
        assert_eq!(fs::read(&path).unwrap(), before);
        assert_eq!(fs::metadata(&path).unwrap().uid(), owner);
    }

    #[test]
    fn stale_temps_of_dead_writers_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(format!("{TEMP_PREFIX}dead"));
        fs::write(&stale, b"half a key").unwrap();
        let live = dir.path().join(format!("{TEMP_PREFIX}live"));
        fs::write(&live, b"being written").unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        for path in [&stale, &live] {
            File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let writer = File::open(&live).unwrap();
        writer.lock().unwrap();
        write_atomic(&dir.path().join("target"), b"x", 0o600).unwrap();
        assert!(!stale.exists(), "a temp nobody holds is removed");
        assert!(live.exists(), "a temp whose writer holds it stays");
        drop(writer);
    }

    #[test]
    fn write_atomic_replaces_a_loose_file_with_the_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }

    #[test]
    fn edit_locked_writes_through_symlinks_and_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, b"a").unwrap();
        fs::set_permissions(&real, Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("real", &link).unwrap();
        let lock = dir.path().join("lock");
        edit_locked::<io::Error>(&lock, &link, 0o600, |old| {
            assert_eq!(old, Some(&b"a"[..]));
            Ok(Some(b"b".to_vec()))
        })
        .unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).unwrap(), b"b");
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
}
