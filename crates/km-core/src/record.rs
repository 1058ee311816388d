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
    /// Who is making it, and what its platform placed.
    pub resources: Resources,
}

/// What a record says about its sandbox beyond km's own fields: km's note of who is making it,
/// and the platform's placement (instance ID, region, isolation, …), which only the platform
/// reads.
///
/// Stored as one JSON object with the platform's fields beside `creator`: the shape every km
/// has written, so a table shared with an older km reads the same both ways.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Who makes the sandbox while its record is `starting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<Creator>,
    /// The platform's placement, as its `provision` returned it.
    #[serde(flatten)]
    pub platform: serde_json::Map<String, serde_json::Value>,
}

impl Resources {
    /// `placement` (a JSON object, as platforms return it) with `creator`; a `creator` key of
    /// the placement's own is dropped, that name being km's.
    pub fn placed(creator: Option<Creator>, placement: &serde_json::Value) -> Self {
        let mut platform = placement.as_object().cloned().unwrap_or_default();
        platform.remove("creator");
        Self { creator, platform }
    }

    /// The platform's placement as one JSON value, for the platform to deserialize.
    pub fn placement(&self) -> serde_json::Value {
        serde_json::Value::Object(self.platform.clone())
    }
}

/// Who is making a sandbox, so that `km list` can tell a create in progress from a dead one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Creator {
    /// A process on the machine that made the record: its PID and its start time in clock
    /// ticks since boot, so a reused PID is not mistaken for it.
    Process {
        /// The process ID.
        pid: i32,
        /// `/proc/<pid>/stat` field 22.
        started: u64,
    },
    /// A manager elsewhere (a Lambda invocation), which ends by this time (epoch ms).
    Until {
        /// Epoch milliseconds.
        until_ms: u64,
    },
    /// A kind a newer km wrote, kept as it is.
    Other(serde_json::Value),
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
    /// The store could not be reached, or throttled km past its retries (a shared store in a
    /// cloud): nothing was decided, and the call may be tried again.
    #[error("state store: {0}")]
    Unreachable(String),
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
    /// Records who makes the sandbox and what its platform placed.
    fn set_resources(&self, id: &SandboxId, resources: &Resources) -> Result<(), StoreError>;
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Creator, Resources};

    fn read(stored: serde_json::Value) -> Resources {
        serde_json::from_value(stored).expect("stored resources read")
    }

    #[test]
    fn resources_read_every_shape_km_has_stored_and_write_it_back_unchanged() {
        for stored in [
            json!({}),
            json!({ "creator": { "pid": 41, "started": 9000 } }),
            json!({ "creator": { "until_ms": 1_700_000_000_000_u64 } }),
            json!({ "creator": { "pid": 41, "started": 9000 }, "instance_id": "i-0a", "region": "eu-west-1" }),
            json!({ "isolation": "namespaces", "network": "none" }),
        ] {
            let resources = read(stored.clone());
            assert_eq!(serde_json::to_value(&resources).unwrap(), stored);
        }
        let made =
            read(json!({ "creator": { "pid": 41, "started": 9000 }, "instance_id": "i-0a" }));
        assert_eq!(
            made.creator,
            Some(Creator::Process {
                pid: 41,
                started: 9000
            })
        );
        assert_eq!(made.placement(), json!({ "instance_id": "i-0a" }));
    }

    #[test]
    fn a_null_or_unknown_creator_is_kept_not_refused() {
        // A km that could not read its own start time wrote `null`.
        assert_eq!(read(json!({ "creator": null })).creator, None);
        let newer = read(json!({ "creator": { "task": "arn:x" } }));
        assert_eq!(
            newer.creator,
            Some(Creator::Other(json!({ "task": "arn:x" })))
        );
    }

    #[test]
    fn a_placement_cannot_take_the_creator_key() {
        let resources = Resources::placed(
            Some(Creator::Until { until_ms: 5 }),
            &json!({ "creator": "platform's", "instance_id": "i-0a" }),
        );
        assert_eq!(
            serde_json::to_value(&resources).unwrap(),
            json!({ "creator": { "until_ms": 5 }, "instance_id": "i-0a" })
        );
        assert_eq!(Resources::placed(None, &json!(null)), Resources::default());
    }
}
