//! Crash-safe file replacement and cross-process advisory locks.
//!
//! A reader never sees a half-written file: content goes to a temp file in the target's own
//! directory, is fsynced, gets its final mode, and is renamed over the target. Edits that read
//! then write hold an advisory lock for the whole read-modify-write, so concurrent km processes
//! cannot lose each other's changes.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    let mut temp = tempfile::Builder::new()
        .prefix(".km-tmp-")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(&dir)?;
    // The umask may have narrowed the mode at creation; set it exactly.
    temp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(&dir);
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
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)?;
        file.lock()?;
        Ok(Self { file })
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
    let mode = match fs::metadata(&target) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(_) => new_mode,
    };
    let Some(updated) = edit(current.as_deref())? else {
        return Ok(false);
    };
    if current.as_deref() == Some(updated.as_slice()) {
        return Ok(false);
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
