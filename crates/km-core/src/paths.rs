//! Where km keeps its files, derived from one home directory so tests can point it anywhere.

use std::path::{Path, PathBuf};

use crate::id::SandboxId;

/// The operator-side file layout rooted at `$HOME`.
#[derive(Debug, Clone)]
pub struct KmPaths {
    home: PathBuf,
}

impl KmPaths {
    /// Lays km out under the given home directory (normally `$HOME`).
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self { home: home.into() }
    }

    /// The operator's home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `~/.km`, km's own state directory.
    pub fn km_dir(&self) -> PathBuf {
        self.home.join(".km")
    }

    /// The SQLite store of sandbox records.
    pub fn store_file(&self) -> PathBuf {
        self.km_dir().join("state.db")
    }

    /// km's settings written by `km init`.
    pub fn config_file(&self) -> PathBuf {
        self.km_dir().join("config.json")
    }

    /// `~/.km/keys`, the per-sandbox client keypairs.
    pub fn keys_dir(&self) -> PathBuf {
        self.km_dir().join("keys")
    }

    /// The sandbox's private key.
    pub fn private_key(&self, id: &SandboxId) -> PathBuf {
        self.keys_dir().join(id.as_str())
    }

    /// The sandbox's public key.
    pub fn public_key(&self, id: &SandboxId) -> PathBuf {
        self.keys_dir().join(format!("{id}.pub"))
    }

    /// Held by whoever rotates the sandbox's key or repairs an interrupted rotation.
    pub fn rekey_lock(&self, id: &SandboxId) -> PathBuf {
        self.keys_dir().join(format!("{id}.rekey.lock"))
    }

    /// The known_hosts file in which km pins each sandbox's host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.km_dir().join("known_hosts")
    }

    /// User profiles that `extends` may name.
    pub fn profiles_dir(&self) -> PathBuf {
        self.km_dir().join("profiles")
    }

    /// Where local sandboxes live.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.km_dir().join("sandboxes")
    }

    /// One local sandbox's directory.
    pub fn sandbox_dir(&self, id: &SandboxId) -> PathBuf {
        self.sandboxes_dir().join(id.as_str())
    }

    /// The advisory lock that serialises edits of `~/.ssh/config` and km's known_hosts.
    pub fn ssh_config_lock(&self) -> PathBuf {
        self.km_dir().join("ssh-config.lock")
    }

    /// The operator's `~/.ssh/config`.
    pub fn ssh_config(&self) -> PathBuf {
        self.home.join(".ssh").join("config")
    }
}
