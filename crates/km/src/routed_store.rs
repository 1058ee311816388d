//! One sandbox store over two: this machine's own records (SQLite) for sandboxes that live on
//! this machine, and the team's shared table for the rest, so a local sandbox never leaks into
//! a team's table and a teammate never sees, or destroys, another machine's local sandbox.

use km_core::id::{Alias, SandboxId};
use km_core::record::{LockHolder, NewSandbox, SandboxRecord, SandboxStore, Status, StoreError};

/// Records of machine-local platforms go to `local`; everything else to `shared`.
pub(crate) struct RoutedStore {
    pub(crate) local: Box<dyn SandboxStore>,
    pub(crate) shared: Box<dyn SandboxStore>,
    /// Whether a platform's sandboxes belong to one machine (their records stay on it).
    pub(crate) machine_local: fn(&str) -> bool,
    /// Whether a machine-local sandbox found in the shared table was made on this machine
    /// (an older km recorded local sandboxes there); others' are never shown.
    pub(crate) made_here: Box<dyn Fn(&SandboxId) -> bool>,
}

impl RoutedStore {
    /// A shared record this machine may see: not another machine's local sandbox.
    fn visible(&self, record: &SandboxRecord) -> bool {
        !(self.machine_local)(&record.platform) || (self.made_here)(&record.id)
    }

    fn shared_visible(
        &self,
        found: Result<Option<SandboxRecord>, StoreError>,
    ) -> Result<Option<SandboxRecord>, StoreError> {
        Ok(found?.filter(|r| self.visible(r)))
    }

    /// The store that holds `id`.
    fn holder(&self, id: &SandboxId) -> Result<&dyn SandboxStore, StoreError> {
        if self.local.get(id)?.is_some() {
            return Ok(self.local.as_ref());
        }
        Ok(self.shared.as_ref())
    }

    /// One record from the two lookups, or the ambiguity named.
    fn one(
        reference: String,
        local: Option<SandboxRecord>,
        shared: Option<SandboxRecord>,
    ) -> Result<Option<SandboxRecord>, StoreError> {
        match (local, shared) {
            (Some(a), Some(b)) if a.id != b.id => Err(StoreError::Ambiguous {
                reference,
                candidates: format!(
                    "{} ({}, this machine) and {} ({}, the team's table)",
                    a.id, a.platform, b.id, b.platform
                ),
            }),
            (Some(a), _) => Ok(Some(a)),
            (None, b) => Ok(b),
        }
    }
}

impl SandboxStore for RoutedStore {
    fn insert(&self, new: &NewSandbox) -> Result<SandboxRecord, StoreError> {
        let (target, other) = if (self.machine_local)(&new.platform) {
            (self.local.as_ref(), self.shared.as_ref())
        } else {
            (self.shared.as_ref(), self.local.as_ref())
        };
        // An alias names one sandbox wherever its record lives.
        if let Some(alias) = &new.alias
            && other.get_by_alias(alias)?.is_some()
        {
            return Err(StoreError::AliasTaken(alias.clone()));
        }
        target.insert(new)
    }

    fn get(&self, id: &SandboxId) -> Result<Option<SandboxRecord>, StoreError> {
        match self.local.get(id)? {
            Some(record) => Ok(Some(record)),
            None => self.shared_visible(self.shared.get(id)),
        }
    }

    fn get_by_alias(&self, alias: &Alias) -> Result<Option<SandboxRecord>, StoreError> {
        Self::one(
            alias.to_string(),
            self.local.get_by_alias(alias)?,
            self.shared_visible(self.shared.get_by_alias(alias))?,
        )
    }

    fn get_by_number(&self, number: u32) -> Result<Option<SandboxRecord>, StoreError> {
        Self::one(
            number.to_string(),
            self.local.get_by_number(number)?,
            self.shared_visible(self.shared.get_by_number(number))?,
        )
    }

    fn list(&self) -> Result<Vec<SandboxRecord>, StoreError> {
        let mut records = self.local.list()?;
        let here: Vec<SandboxId> = records.iter().map(|r| r.id.clone()).collect();
        records.extend(
            self.shared
                .list()?
                .into_iter()
                .filter(|r| self.visible(r) && !here.contains(&r.id)),
        );
        Ok(records)
    }

    fn set_status(&self, id: &SandboxId, status: Status) -> Result<(), StoreError> {
        self.holder(id)?.set_status(id, status)
    }

    fn set_locked(&self, id: &SandboxId, holder: Option<&LockHolder>) -> Result<(), StoreError> {
        self.holder(id)?.set_locked(id, holder)
    }

    fn set_key_fingerprint(
        &self,
        id: &SandboxId,
        fingerprint: Option<&str>,
    ) -> Result<(), StoreError> {
        self.holder(id)?.set_key_fingerprint(id, fingerprint)
    }

    fn set_resources(
        &self,
        id: &SandboxId,
        resources: &km_core::record::Resources,
    ) -> Result<(), StoreError> {
        self.holder(id)?.set_resources(id, resources)
    }

    fn delete(&self, id: &SandboxId) -> Result<(), StoreError> {
        self.holder(id)?.delete(id)
    }
}
