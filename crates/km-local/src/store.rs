//! The SQLite implementation of the sandbox store (`~/.km/state.db`).
//!
//! List numbers come from an AUTOINCREMENT key, so they are never reused; alias uniqueness is
//! a UNIQUE constraint, so two racing creates cannot both win. WAL mode plus a busy timeout
//! lets a long-running tunnel and a `km list` share the file.

use std::path::Path;
use std::time::Duration;

use km_core::id::{Alias, SandboxId};
use km_core::record::{
    LockHolder, NewSandbox, Resources, SandboxRecord, SandboxStore, Status, StoreError,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// A sandbox store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sandboxes (
    number          INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    alias           TEXT UNIQUE,
    profile         TEXT NOT NULL,
    profile_path    TEXT NOT NULL,
    platform        TEXT NOT NULL,
    status          TEXT NOT NULL,
    locked          INTEGER NOT NULL DEFAULT 0,
    locked_by       TEXT,
    locked_at       INTEGER,
    created_at      INTEGER NOT NULL,
    vscode_enabled  INTEGER NOT NULL,
    key_fingerprint TEXT,
    resources       TEXT NOT NULL DEFAULT '{}'
);
";

const COLUMNS: &str = "number, id, alias, profile, profile_path, platform, status, locked, \
                       created_at, vscode_enabled, key_fingerprint, resources, locked_by, locked_at";

/// Columns added after the first release, with their types: a store an older km made gets
/// them when it is opened.
const ADDED_COLUMNS: [(&str, &str); 2] = [("locked_by", "TEXT"), ("locked_at", "INTEGER")];

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connection = Connection::open(path).map_err(backend)?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(backend)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        connection.execute_batch(SCHEMA).map_err(backend)?;
        add_missing_columns(&connection)?;
        Ok(Self { connection })
    }

    fn one(
        &self,
        clause: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Option<SandboxRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM sandboxes WHERE {clause} = ?1");
        self.connection
            .query_row(&sql, [value], from_row)
            .optional()
            .map_err(backend)
    }

    fn update(
        &self,
        id: &SandboxId,
        sql: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<(), StoreError> {
        let changed = self
            .connection
            .execute(sql, params![value, id.as_str()])
            .map_err(backend)?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                reference: id.to_string(),
                tried: "as a sandbox ID".into(),
            });
        }
        Ok(())
    }
}

fn add_missing_columns(connection: &Connection) -> Result<(), StoreError> {
    let mut statement = connection
        .prepare("SELECT name FROM pragma_table_info('sandboxes')")
        .map_err(backend)?;
    let present: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    for (name, kind) in ADDED_COLUMNS {
        if present.iter().any(|p| p == name) {
            continue;
        }
        match connection.execute(
            &format!("ALTER TABLE sandboxes ADD COLUMN {name} {kind}"),
            [],
        ) {
            // Another km opening the same store at the same moment added it first.
            Err(e) if e.to_string().contains("duplicate column") => {}
            other => {
                other.map_err(backend)?;
            }
        }
    }
    Ok(())
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<SandboxRecord> {
    let bad = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    let id: String = row.get(1)?;
    let alias: Option<String> = row.get(2)?;
    let status: String = row.get(6)?;
    let resources: String = row.get(11)?;
    Ok(SandboxRecord {
        number: row.get(0)?,
        id: id
            .parse()
            .map_err(|e: km_core::id::IdError| bad(1, e.to_string()))?,
        // An alias an older build accepted but the grammar now refuses is ignored, not fatal.
        alias: alias.and_then(|a| a.parse::<Alias>().ok()),
        profile: row.get(3)?,
        profile_path: row.get(4)?,
        platform: row.get(5)?,
        status: status.parse().map_err(|e| bad(6, e))?,
        locked: row.get(7)?,
        lock_holder: match (
            row.get::<_, Option<String>>(12)?,
            row.get::<_, Option<i64>>(13)?,
        ) {
            (Some(by), Some(since)) if row.get::<_, bool>(7)? => Some(LockHolder {
                by,
                since: u64::try_from(since).unwrap_or(0),
            }),
            _ => None,
        },
        created_at: u64::try_from(row.get::<_, i64>(8)?).unwrap_or(0),
        vscode_enabled: row.get(9)?,
        key_fingerprint: row.get(10)?,
        resources: serde_json::from_str(&resources).map_err(|e| bad(11, e.to_string()))?,
    })
}

impl SandboxStore for SqliteStore {
    fn insert(&self, new: &NewSandbox) -> Result<SandboxRecord, StoreError> {
        let result = self.connection.execute(
            "INSERT INTO sandboxes (id, alias, profile, profile_path, platform, status, created_at, vscode_enabled)
             VALUES (?1, ?2, ?3, ?4, ?5, 'starting', ?6, ?7)",
            params![
                new.id.as_str(),
                new.alias.as_ref().map(Alias::as_str),
                new.profile,
                new.profile_path,
                new.platform,
                i64::try_from(new.created_at).unwrap_or(i64::MAX),
                new.vscode_enabled
            ],
        );
        match result {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, Some(message)))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(match (&new.alias, message.contains("alias")) {
                    (Some(alias), true) => StoreError::AliasTaken(alias.clone()),
                    _ => StoreError::Exists(new.id.clone()),
                });
            }
            Err(e) => return Err(backend(e)),
        }
        self.get(&new.id)?
            .ok_or_else(|| StoreError::Backend("the inserted record vanished".into()))
    }

    fn get(&self, id: &SandboxId) -> Result<Option<SandboxRecord>, StoreError> {
        self.one("id", &id.as_str())
    }

    fn get_by_alias(&self, alias: &Alias) -> Result<Option<SandboxRecord>, StoreError> {
        self.one("alias", &alias.as_str())
    }

    fn get_by_number(&self, number: u32) -> Result<Option<SandboxRecord>, StoreError> {
        self.one("number", &number)
    }

    fn list(&self) -> Result<Vec<SandboxRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM sandboxes ORDER BY number");
        let mut statement = self.connection.prepare(&sql).map_err(backend)?;
        let rows = statement.query_map([], from_row).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn set_status(&self, id: &SandboxId, status: Status) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE sandboxes SET status = ?1 WHERE id = ?2",
            &status.as_str(),
        )
    }

    fn set_locked(&self, id: &SandboxId, holder: Option<&LockHolder>) -> Result<(), StoreError> {
        let changed = self
            .connection
            .execute(
                "UPDATE sandboxes SET locked = ?1, locked_by = ?2, locked_at = ?3 WHERE id = ?4",
                params![
                    holder.is_some(),
                    holder.map(|h| h.by.as_str()),
                    holder.map(|h| i64::try_from(h.since).unwrap_or(i64::MAX)),
                    id.as_str()
                ],
            )
            .map_err(backend)?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                reference: id.to_string(),
                tried: "as a sandbox ID".into(),
            });
        }
        Ok(())
    }

    fn set_key_fingerprint(
        &self,
        id: &SandboxId,
        fingerprint: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE sandboxes SET key_fingerprint = ?1 WHERE id = ?2",
            &fingerprint,
        )
    }

    fn set_resources(&self, id: &SandboxId, resources: &Resources) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE sandboxes SET resources = ?1 WHERE id = ?2",
            &serde_json::to_string(resources).map_err(|e| StoreError::Backend(e.to_string()))?,
        )
    }

    fn delete(&self, id: &SandboxId) -> Result<(), StoreError> {
        self.connection
            .execute("DELETE FROM sandboxes WHERE id = ?1", [id.as_str()])
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use km_core::id::SandboxRef;

    fn new(id: &str, alias: Option<&str>) -> NewSandbox {
        NewSandbox {
            id: id.parse().unwrap(),
            alias: alias.map(|a| a.parse().unwrap()),
            profile: "default".into(),
            profile_path: "profiles/default.yaml".into(),
            platform: "local".into(),
            vscode_enabled: true,
            created_at: 1,
        }
    }

    #[test]
    fn numbers_are_never_reused_and_aliases_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let a = store.insert(&new("sb-00000001", Some("poc"))).unwrap();
        let b = store.insert(&new("sb-00000002", None)).unwrap();
        assert_eq!((a.number, b.number), (1, 2));
        assert!(matches!(
            store.insert(&new("sb-00000003", Some("poc"))),
            Err(StoreError::AliasTaken(_))
        ));
        store.delete(&b.id).unwrap();
        let c = store.insert(&new("sb-00000004", None)).unwrap();
        assert_eq!(
            c.number, 3,
            "a destroyed sandbox's number is not handed out again"
        );
        assert_eq!(
            store
                .resolve(&"poc".parse::<SandboxRef>().unwrap())
                .unwrap()
                .id,
            a.id
        );
        assert_eq!(store.resolve(&SandboxRef::Number(3)).unwrap().id, c.id);
        assert!(matches!(
            store.resolve(&SandboxRef::Number(2)),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn an_id_resolves_to_its_own_sandbox_even_when_an_old_row_has_it_as_alias() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        store.insert(&new("sb-00000001", None)).unwrap();
        store.insert(&new("sb-00000002", None)).unwrap();
        // Builds before the alias grammar refused ID-shaped aliases could store one.
        store
            .connection
            .execute(
                "UPDATE sandboxes SET alias = 'sb-00000001' WHERE id = 'sb-00000002'",
                [],
            )
            .unwrap();
        let reference: SandboxRef = "sb-00000001".parse().unwrap();
        assert_eq!(
            store.resolve(&reference).unwrap().id.as_str(),
            "sb-00000001"
        );
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 2, "the old row stays readable");
        assert_eq!(listed[1].alias, None, "its unusable alias is not shown");
    }
}
