//! Sandbox records and the store trait that keeps them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::id::{Alias, SandboxId, SandboxRef};

/// A sandbox's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created or resumed.
    Starting,
    /// Up and serving.
    Running,
    /// Stopped on purpose, or its agent died.
    Stopped,
    /// Creation or boot failed.
    Failed,
}

impl Status {
    /// The lowercase word shown in `km list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "starting" => Ok(Self::Starting),
            "running" => Ok(Self::Running),
            "stopped" => Ok(Self::Stopped),
            "failed" => Ok(Self::Failed),
            other => Err(format!("unknown status {other:?}")),
        }
    }
}

/// Everything km remembers about one sandbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxRecord {
    /// The sandbox ID.
    pub id: SandboxId,
    /// The optional alias.
    pub alias: Option<Alias>,
    /// The `km list` number, assigned at create and never reused.
    pub number: u32,
    /// The profile's name.
    pub profile: String,
    /// Path of the profile file it was created from.
    pub profile_path: String,
    /// The platform that runs it (`local`, `aws`).
    pub platform: String,
    /// Last recorded state.
    pub status: Status,
    /// Whether `km lock` protects it.
    pub locked: bool,
    /// Who locked it and when (`None` when unlocked, or locked by a km that did not say).
    pub lock_holder: Option<LockHolder>,
    /// Unix seconds at creation.
    pub created_at: u64,
    /// Whether the profile enabled VS Code (sshd + the operator's key).
    pub vscode_enabled: bool,
    /// Fingerprint of the installed client key.
    pub key_fingerprint: Option<String>,
    /// Platform-specific resources (instance ID, region, …).
    pub resources: serde_json::Value,
}

/// Who holds a sandbox's lock, as `km list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockHolder {
    /// The operator name (`km init --operator`, default user@host).
    pub by: String,
    /// Unix seconds when the lock was taken.
    pub since: u64,
}

/// The fields a new record starts with.
#[derive(Debug, Clone)]
pub struct NewSandbox {
    /// The sandbox ID.
    pub id: SandboxId,
    /// The optional alias.
    pub alias: Option<Alias>,
    /// The profile's name.
    pub profile: String,
    /// Path of the profile file.
    pub profile_path: String,
    /// The platform name.
    pub platform: String,
    /// Whether VS Code is enabled.
    pub vscode_enabled: bool,
    /// Unix seconds at creation.
    pub created_at: u64,
}

/// Errors from a sandbox store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another live sandbox already has the alias.
    #[error("alias {0} is already used by another sandbox")]
    AliasTaken(Alias),
    /// The ID is already recorded.
    #[error("sandbox {0} already exists")]
    Exists(SandboxId),
    /// Nothing matched the reference.
    #[error("no sandbox matches {reference:?} (tried {tried})")]
    NotFound {
        /// What the user typed.
        reference: String,
        /// How it was looked up.
        tried: String,
    },
    /// The reference names sandboxes in two stores (this machine's and the team's).
    #[error("{reference:?} names more than one sandbox: {candidates}")]
    Ambiguous {
        /// What the user typed.
        reference: String,
        /// The sandboxes it names, with their platforms.
        candidates: String,
    },
    /// The store's credentials are missing or expired (a shared store in a cloud).
    #[error("state store: {0}")]
    Credentials(String),
    /// The database failed.
    #[error("state store: {0}")]
    Backend(String),
}

/// Where sandbox records live: SQLite locally, DynamoDB on AWS.
pub trait SandboxStore {
    /// Records a new sandbox, assigning its list number; refuses a taken alias atomically.
    fn insert(&self, new: &NewSandbox) -> Result<SandboxRecord, StoreError>;
    /// The record with this ID, if any.
    fn get(&self, id: &SandboxId) -> Result<Option<SandboxRecord>, StoreError>;
    /// The record with this alias, if any.
    fn get_by_alias(&self, alias: &Alias) -> Result<Option<SandboxRecord>, StoreError>;
    /// The record with this list number, if any.
    fn get_by_number(&self, number: u32) -> Result<Option<SandboxRecord>, StoreError>;
    /// Every record, by list number.
    fn list(&self) -> Result<Vec<SandboxRecord>, StoreError>;
    /// Sets the recorded status.
    fn set_status(&self, id: &SandboxId, status: Status) -> Result<(), StoreError>;
    /// Locks the sandbox for `holder`, or unlocks it (`None`).
    fn set_locked(&self, id: &SandboxId, holder: Option<&LockHolder>) -> Result<(), StoreError>;
    /// Records the installed client key's fingerprint.
    fn set_key_fingerprint(
        &self,
        id: &SandboxId,
        fingerprint: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Records platform resources.
    fn set_resources(
        &self,
        id: &SandboxId,
        resources: &serde_json::Value,
    ) -> Result<(), StoreError>;
    /// Forgets the sandbox.
    fn delete(&self, id: &SandboxId) -> Result<(), StoreError>;

    /// Finds the one sandbox a user reference names, or says what was tried.
    fn resolve(&self, reference: &SandboxRef) -> Result<SandboxRecord, StoreError> {
        let not_found = |tried: &str| StoreError::NotFound {
            reference: reference.to_string(),
            tried: tried.to_owned(),
        };
        match reference {
            SandboxRef::Number(n) => self
                .get_by_number(*n)?
                .ok_or_else(|| not_found("as a `km list` number")),
            SandboxRef::Alias(alias) => self
                .get_by_alias(alias)?
                .ok_or_else(|| not_found("as an alias")),
            SandboxRef::Id(id) => self.get(id)?.ok_or_else(|| not_found("as a sandbox ID")),
        }
    }
}
