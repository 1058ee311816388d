//! Everything a command needs from the environment, read once at start-up.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use km_core::id::SandboxRef;
use km_core::paths::KmPaths;
use km_core::platform::Platform;
use km_core::profile::SearchPath;
use km_core::record::{SandboxRecord, SandboxStore};
use km_local::sshd::{SshdTools, find_tools};

use crate::error::{CommandError, CommandResult, check_file_hint};

/// The platforms this process has opened, by name: each is opened once, however many records
/// name it (opening the AWS one builds its SDK clients).
#[derive(Clone, Default)]
pub(crate) struct OpenPlatforms(Arc<Mutex<HashMap<&'static str, Arc<dyn Platform>>>>);

impl OpenPlatforms {
    /// The platform named `name`, opened with `open` the first time it is asked for.
    pub(crate) fn get_or_open(
        &self,
        name: &'static str,
        open: impl FnOnce() -> CommandResult<Arc<dyn Platform>>,
    ) -> CommandResult<Arc<dyn Platform>> {
        let mut opened = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(platform) = opened.get(name) {
            return Ok(Arc::clone(platform));
        }
        let platform = open()?;
        opened.insert(name, Arc::clone(&platform));
        Ok(platform)
    }
}

impl std::fmt::Debug for OpenPlatforms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opened = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_set().entries(opened.keys()).finish()
    }
}

/// The settings file's bytes as this process last read or wrote them (`None` inside: there is
/// no file), so that the file is read once however many parts of a command ask for settings.
#[derive(Clone, Default)]
pub(crate) struct SettingsBytes(Arc<Mutex<Option<Option<Vec<u8>>>>>);

impl SettingsBytes {
    /// The bytes, read with `read` the first time they are asked for; a failed read is not kept.
    pub(crate) fn get_or_read(
        &self,
        read: impl FnOnce() -> std::io::Result<Option<Vec<u8>>>,
    ) -> std::io::Result<Option<Vec<u8>>> {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bytes) = known.as_ref() {
            return Ok(bytes.clone());
        }
        let bytes = read()?;
        *known = Some(bytes.clone());
        Ok(bytes)
    }

    /// What this process has just written to the file.
    pub(crate) fn written(&self, bytes: Vec<u8>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Some(bytes));
    }
}

impl std::fmt::Debug for SettingsBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f.write_str(match known.as_ref() {
            None => "unread",
            Some(None) => "absent",
            Some(Some(_)) => "read",
        })
    }
}

/// The process environment km depends on.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) paths: KmPaths,
    pub(crate) path_var: String,
    pub(crate) sshd_override: Option<PathBuf>,
    /// `KM_BWRAP`: the bubblewrap that isolates local sandboxes, instead of the one on `PATH`.
    pub(crate) bwrap_override: Option<PathBuf>,
    pub(crate) profile_path: Option<OsString>,
    pub(crate) km_exe: PathBuf,
    /// `$USER`, for the default operator name.
    pub(crate) user: Option<String>,
    /// The platforms opened so far.
    pub(crate) platforms: OpenPlatforms,
    /// `~/.km/config.json`, read once.
    pub(crate) settings_bytes: SettingsBytes,
}

impl Context {
    pub(crate) fn from_process() -> CommandResult<Self> {
        let home = match std::env::var_os("HOME").map(PathBuf::from) {
            Some(home) if home.is_absolute() => home,
            Some(home) => {
                return Err(CommandError::user(format!(
                    "HOME is {:?}, not an absolute path; km keeps its state in $HOME/.km and reads $HOME/.ssh/config",
                    home
                ))
                .hint("set it to your home directory, e.g. export HOME=/home/$(id -un)"));
            }
            None => {
                return Err(CommandError::user(
                    "HOME is not set; km keeps its state in $HOME/.km and reads $HOME/.ssh/config",
                )
                .hint("set it to your home directory, e.g. export HOME=/home/$(id -un)"));
            }
        };
        Ok(Self::for_home(home))
    }

    /// The environment, with `home` as the home directory (the Lambda manager has no HOME).
    pub(crate) fn for_home(home: PathBuf) -> Self {
        Self {
            paths: KmPaths::new(home),
            path_var: std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            sshd_override: std::env::var_os("KM_SSHD").map(PathBuf::from),
            bwrap_override: std::env::var_os("KM_BWRAP").map(PathBuf::from),
            profile_path: std::env::var_os("KM_PROFILE_PATH"),
            km_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("km")),
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok(),
            platforms: OpenPlatforms::default(),
            settings_bytes: SettingsBytes::default(),
        }
    }

    /// Where `extends` looks after the profile's own directory.
    pub(crate) fn search_path(&self) -> SearchPath {
        let mut dirs = vec![self.paths.profiles_dir()];
        if let Some(extra) = &self.profile_path {
            dirs.extend(std::env::split_paths(extra));
        }
        SearchPath { dirs }
    }

    /// OpenSSH's server tools, honouring `KM_SSHD`.
    pub(crate) fn tools(&self) -> CommandResult<SshdTools> {
        find_tools(self.sshd_override.as_deref(), Some(&self.path_var)).map_err(|e| {
            let error = CommandError::user(e.to_string());
            if self.sshd_override.is_some() {
                error.hint("KM_SSHD must name an executable sshd by absolute path; unset it to search the usual places")
            } else {
                error.hint(install_hint())
            }
        })
    }

    /// Finds the sandbox a user reference names.
    pub(crate) fn resolve(
        &self,
        store: &dyn SandboxStore,
        text: &str,
    ) -> CommandResult<SandboxRecord> {
        let reference: SandboxRef = text.parse().map_err(|e: km_core::id::IdError| {
            CommandError::user(e.to_string())
                .hint("run `km list` to see sandboxes with their IDs, aliases and numbers")
        })?;
        Ok(store.resolve(&reference)?)
    }
}

/// A store that cannot be opened, with the file named.
pub(crate) fn store_error(
    file: &std::path::Path,
    error: km_core::record::StoreError,
) -> CommandError {
    CommandError::user(format!("cannot open km's state store {}", file.display()))
        .cause(error)
        .hint(check_file_hint(file))
}

/// How to install OpenSSH's server on this OS.
pub(crate) fn install_hint() -> &'static str {
    if cfg!(target_os = "macos") {
        "macOS ships /usr/sbin/sshd; set KM_SSHD=/usr/sbin/sshd if it is not found"
    } else {
        "install it: `sudo apt-get install openssh-server` (Debian/Ubuntu) or `sudo dnf install openssh-server` (Fedora)"
    }
}

/// The operator's login name, which local sandboxes' sshd logs in.
pub(crate) fn current_user() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::SettingsBytes;

    #[test]
    fn the_settings_file_is_read_once_and_what_was_written_is_what_is_read_next() {
        let bytes = SettingsBytes::default();
        let reads = Cell::new(0);
        let read = || {
            reads.set(reads.get() + 1);
            Ok(Some(b"{}".to_vec()))
        };
        assert_eq!(bytes.get_or_read(read).unwrap(), Some(b"{}".to_vec()));
        assert_eq!(bytes.get_or_read(read).unwrap(), Some(b"{}".to_vec()));
        assert_eq!(reads.get(), 1);
        bytes.written(b"{\"platform\":\"aws\"}".to_vec());
        assert_eq!(
            bytes.get_or_read(read).unwrap(),
            Some(b"{\"platform\":\"aws\"}".to_vec())
        );
        assert_eq!(reads.get(), 1);
        // A failed read is not kept: the next asks the disk again.
        let failed = SettingsBytes::default();
        assert!(
            failed
                .get_or_read(|| Err(std::io::Error::other("EIO")))
                .is_err()
        );
        assert_eq!(failed.get_or_read(|| Ok(None)).unwrap(), None);
    }
}
