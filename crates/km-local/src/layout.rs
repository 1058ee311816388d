//! The files inside one local sandbox's directory (`~/.km/sandboxes/<id>/`).

use std::path::{Path, PathBuf};

/// Paths inside a local sandbox directory.
#[derive(Debug, Clone)]
pub struct SandboxLayout {
    root: PathBuf,
    /// The sandbox user's home, when it is not `<root>/home` (inside an isolated sandbox).
    home: Option<PathBuf>,
}

impl SandboxLayout {
    /// The layout of the sandbox at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            home: None,
        }
    }

    /// The same layout with the home at `home`.
    pub fn with_home(mut self, home: Option<PathBuf>) -> Self {
        self.home = home;
        self
    }

    /// The sandbox directory itself (the userdata's `KM_ROOT`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The sandbox user's home.
    pub fn home(&self) -> PathBuf {
        self.home.clone().unwrap_or_else(|| self.root.join("home"))
    }

    /// What only the operator's side sees: the isolated sandbox's passwd and group, the
    /// launcher's PID. Never bound into the sandbox.
    pub fn outside(&self) -> PathBuf {
        self.root.join("outside")
    }

    /// Where commands start.
    pub fn workspace(&self) -> PathBuf {
        self.home().join("workspace")
    }

    /// The first-boot script.
    pub fn userdata(&self) -> PathBuf {
        self.root.join("userdata.sh")
    }

    /// The agent's settings.
    pub fn agent_config(&self) -> PathBuf {
        self.root.join("agent.json")
    }

    /// Present once first boot has succeeded.
    pub fn boot_done(&self) -> PathBuf {
        self.root.join("run/boot.done")
    }

    /// Output of first boot.
    pub fn boot_log(&self) -> PathBuf {
        self.root.join("log/boot.log")
    }

    /// The agent's own log (its stderr).
    pub fn agent_log(&self) -> PathBuf {
        self.root.join("log/agent.log")
    }

    /// sshd's log.
    pub fn sshd_log(&self) -> PathBuf {
        self.root.join("log/sshd.log")
    }

    /// The sandbox's sshd_config.
    pub fn sshd_config(&self) -> PathBuf {
        self.root.join("etc/sshd_config")
    }

    /// The sandbox's host public key.
    pub fn host_public_key(&self) -> PathBuf {
        self.root.join("etc/ssh/ssh_host_ed25519_key.pub")
    }

    /// The agent channel.
    pub fn agent_socket(&self) -> PathBuf {
        self.root.join("run/agent.sock")
    }

    /// The agent's process ID.
    pub fn agent_pid(&self) -> PathBuf {
        self.root.join("run/agent.pid")
    }
}
