//! The DynamoDB implementation of the sandbox store: one table the team shares.
//!
//! Items, all under the one hash key `pk`:
//! - `sandbox#<id>`: the record;
//! - `alias#<alias>` and `number#<n>`: claims that point at an ID, written in the same
//!   transaction as the record with `attribute_not_exists`, so two racing creates cannot both
//!   take an alias and a number is never handed out twice;
//! - `counter`: the last list number, raised with an atomic `ADD`, so numbers are never reused.
//!
//! Every change is a conditional write; nothing reads and then writes on the strength of what
//! it read.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType, Put,
    ReturnValue, ScalarAttributeType, TableStatus, TransactWriteItem,
};
use km_core::id::{Alias, SandboxId};
use km_core::record::{
    LockHolder, NewSandbox, Resources, SandboxRecord, SandboxStore, Status, StoreError,
};

use crate::connect::{AwsSettings, block_on, runtime, sdk_config};
use crate::failure::AwsFailure;

type Item = HashMap<String, AttributeValue>;

/// Sandbox records in a DynamoDB table.
#[derive(Debug)]
pub struct DynamoStore {
    runtime: tokio::runtime::Runtime,
    client: Client,
    table: String,
}

/// What [`ensure_table`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSetup {
    /// The table was created.
    Created,
    /// It was already there, with km's key schema.
    AlreadyThere,
}

fn backend(failure: AwsFailure) -> StoreError {
    match failure {
        AwsFailure::Credentials(_) => StoreError::Credentials(failure.to_string()),
        AwsFailure::Unreachable(_) | AwsFailure::Throttled(_) => {
            StoreError::Unreachable(failure.to_string())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

fn sandbox_key(id: &SandboxId) -> String {
    format!("sandbox#{id}")
}

fn alias_key(alias: &Alias) -> String {
    format!("alias#{alias}")
}

fn number_key(number: u32) -> String {
    format!("number#{number}")
}

/// How long a new table may stay CREATING before `km init --aws` gives up on it.
const TABLE_ACTIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
const TABLE_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Creates the record table in `settings.region` if it does not exist (changing nothing if it
/// does), then waits until it is ACTIVE: CreateTable returns while the table is CREATING, and
/// until it is ACTIVE every read and write is refused (ResourceNotFoundException), so a
/// `km create` right after `km init --aws` would fail.
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateTable.html>
pub fn ensure_table(settings: &AwsSettings) -> Result<TableSetup, AwsFailure> {
    let setup = create_table_if_missing(settings)?;
    wait_until_active(settings)?;
    Ok(setup)
}

fn wait_until_active(settings: &AwsSettings) -> Result<(), AwsFailure> {
    let runtime = runtime().map_err(|e| AwsFailure::Other(e.to_string()))?;
    block_on(&runtime, async {
        let client = Client::new(&sdk_config(&settings.region).await);
        let deadline = std::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
        loop {
            match client
                .describe_table()
                .table_name(&settings.table)
                .send()
                .await
            {
                Ok(found)
                    if found.table().and_then(|t| t.table_status())
                        == Some(&TableStatus::Active) =>
                {
                    return Ok(());
                }
                Ok(_) => {}
                Err(error) => match AwsFailure::from_sdk(error) {
                    // Eventually consistent right after CreateTable, too.
                    AwsFailure::NotFound(_) => {}
                    other => return Err(other),
                },
            }
            if std::time::Instant::now() > deadline {
                return Err(AwsFailure::Other(format!(
                    "table {} in {} did not become ACTIVE within {} s; see it with: aws dynamodb describe-table --region {} --table-name {}",
                    settings.table,
                    settings.region,
                    TABLE_ACTIVE_TIMEOUT.as_secs(),
                    settings.region,
                    settings.table
                )));
            }
            tokio::time::sleep(TABLE_POLL).await;
        }
    })
}

fn create_table_if_missing(settings: &AwsSettings) -> Result<TableSetup, AwsFailure> {
    let runtime = runtime().map_err(|e| AwsFailure::Other(e.to_string()))?;
    block_on(&runtime, async {
        let client = Client::new(&sdk_config(&settings.region).await);
        match client
            .describe_table()
            .table_name(&settings.table)
            .send()
            .await
        {
            Ok(found) => {
                let key = found
                    .table()
                    .map(|t| t.key_schema())
                    .unwrap_or_default()
                    .iter()
                    .map(|k| k.attribute_name().to_owned())
                    .collect::<Vec<_>>();
                if key != ["pk"] {
                    return Err(AwsFailure::Other(format!(
                        "table {} exists but is not a km table (its key is {key:?}, km's is [\"pk\"]); pick another with --table",
                        settings.table
                    )));
                }
                return Ok(TableSetup::AlreadyThere);
            }
            Err(error) => match AwsFailure::from_sdk(error) {
                AwsFailure::NotFound(_) => {}
                other => return Err(other),
            },
        }
        let build = |e: aws_sdk_dynamodb::error::BuildError| AwsFailure::Other(e.to_string());
        let created = client
            .create_table()
            .table_name(&settings.table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => Ok(TableSetup::Created),
            // Someone else created it in the meantime.
            Err(error) => match AwsFailure::from_sdk(error) {
                AwsFailure::Other(why) if why.starts_with("ResourceInUseException") => {
                    Ok(TableSetup::AlreadyThere)
                }
                other => Err(other),
            },
        }
    })
}

impl DynamoStore {
    /// Opens the record table of `settings` (which `km init --aws` created).
    pub fn open(settings: &AwsSettings) -> Result<Self, StoreError> {
        let runtime = runtime().map_err(|e| StoreError::Backend(e.to_string()))?;
        let client = block_on(&runtime, async {
            Client::new(&sdk_config(&settings.region).await)
        });
        Ok(Self {
            runtime,
            client,
            table: settings.table.clone(),
        })
    }

    fn get_item(&self, key: String) -> Result<Option<Item>, StoreError> {
        block_on(&self.runtime, async {
            self.client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(key))
                .consistent_read(true)
                .send()
                .await
                .map(|out| out.item)
                .map_err(|e| backend(AwsFailure::from_sdk(e)))
        })
    }

    fn claimed_id(&self, key: String) -> Result<Option<SandboxRecord>, StoreError> {
        let Some(item) = self.get_item(key)? else {
            return Ok(None);
        };
        let Some(id) = text(&item, "id").and_then(|id| id.parse::<SandboxId>().ok()) else {
            return Ok(None);
        };
        self.get(&id)
    }

    fn next_number(&self) -> Result<u32, StoreError> {
        block_on(&self.runtime, async {
            let out = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s("counter"))
                .update_expression("ADD n :one")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await
                .map_err(|e| backend(AwsFailure::from_sdk(e)))?;
            out.attributes()
                .and_then(|a| a.get("n"))
                .and_then(|n| n.as_n().ok())
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StoreError::Backend("the list-number counter is unreadable".into()))
        })
    }

    fn update(
        &self,
        id: &SandboxId,
        expression: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        block_on(&self.runtime, async {
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(sandbox_key(id)))
                .update_expression(expression)
                .condition_expression("attribute_exists(pk)");
            for (name, value) in values {
                request = request.expression_attribute_values(name, value);
            }
            if expression.contains("#s") {
                request = request.expression_attribute_names("#s", "status");
            }
            match request.send().await {
                Ok(_) => Ok(()),
                Err(error) => match AwsFailure::from_sdk(error) {
                    AwsFailure::ConditionFailed(_) => Err(StoreError::NotFound {
                        reference: id.to_string(),
                        tried: "as a sandbox ID".into(),
                    }),
                    other => Err(backend(other)),
                },
            }
        })
    }

    fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), AwsFailure> {
        block_on(&self.runtime, async {
            self.client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
                .map(|_| ())
                .map_err(AwsFailure::from_sdk)
        })
    }

    fn put_new(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The record an item holds, or an error naming the item and how to remove it.
    fn readable(&self, item: &Item) -> Result<SandboxRecord, StoreError> {
        record_of(item).ok_or_else(|| {
            let key = text(item, "pk").unwrap_or_default();
            StoreError::Backend(format!(
                "the record {key} in table {} is not one km can read; repair it, or remove it: aws dynamodb delete-item --table-name {} --key '{{\"pk\":{{\"S\":\"{key}\"}}}}'",
                self.table, self.table
            ))
        })
    }

    fn delete_of(&self, key: String) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(key))
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

fn record_item(new: &NewSandbox, number: u32) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), s(sandbox_key(&new.id)));
    item.insert("id".into(), s(new.id.as_str()));
    if let Some(alias) = &new.alias {
        item.insert("alias".into(), s(alias.as_str()));
    }
    item.insert("number".into(), AttributeValue::N(number.to_string()));
    item.insert("profile".into(), s(&new.profile));
    item.insert("profile_path".into(), s(&new.profile_path));
    item.insert("platform".into(), s(&new.platform));
    item.insert("status".into(), s(Status::Starting.as_str()));
    item.insert("locked".into(), AttributeValue::Bool(false));
    item.insert(
        "created_at".into(),
        AttributeValue::N(new.created_at.to_string()),
    );
    item.insert(
        "vscode_enabled".into(),
        AttributeValue::Bool(new.vscode_enabled),
    );
    item.insert("resources".into(), s("{}"));
    item
}

fn record_of(item: &Item) -> Option<SandboxRecord> {
    let number = |name: &str| item.get(name)?.as_n().ok()?.parse::<u64>().ok();
    let flag = |name: &str| item.get(name).and_then(|v| v.as_bool().ok()).copied();
    Some(SandboxRecord {
        id: text(item, "id")?.parse().ok()?,
        alias: text(item, "alias").and_then(|a| a.parse().ok()),
        number: u32::try_from(number("number")?).ok()?,
        profile: text(item, "profile")?,
        profile_path: text(item, "profile_path")?,
        platform: text(item, "platform")?,
        status: text(item, "status")?.parse().ok()?,
        locked: flag("locked").unwrap_or(false),
        lock_holder: match (text(item, "locked_by"), number("locked_at")) {
            (Some(by), Some(since)) if flag("locked").unwrap_or(false) => {
                Some(LockHolder { by, since })
            }
            _ => None,
        },
        created_at: number("created_at").unwrap_or(0),
        vscode_enabled: flag("vscode_enabled").unwrap_or(true),
        key_fingerprint: text(item, "key_fingerprint"),
        // Unreadable resources make the record unreadable, as they do in SQLite, rather than
        // a record that seems to name nothing.
        resources: match text(item, "resources") {
            Some(stored) => serde_json::from_str(&stored).ok()?,
            None => Resources::default(),
        },
    })
}

/// How often an insert that lost a transaction race is tried again.
const CONFLICT_RETRIES: u64 = 5;

impl SandboxStore for DynamoStore {
    fn insert(&self, new: &NewSandbox) -> Result<SandboxRecord, StoreError> {
        let number = self.next_number()?;
        let mut claim = Item::new();
        claim.insert("id".into(), s(new.id.as_str()));
        let mut items = vec![self.put_new(record_item(new, number))?];
        let mut number_claim = claim.clone();
        number_claim.insert("pk".into(), s(number_key(number)));
        items.push(self.put_new(number_claim)?);
        if let Some(alias) = &new.alias {
            let mut alias_claim = claim;
            alias_claim.insert("pk".into(), s(alias_key(alias)));
            items.push(self.put_new(alias_claim)?);
        }
        // A transaction cancelled while no claim it conflicts with is visible yet lost a race
        // with another one in flight (DynamoDB's TransactionConflict): try again, briefly.
        let mut attempt = 0;
        loop {
            match self.transact(items.clone()) {
                Ok(()) => break,
                Err(AwsFailure::ConditionFailed(why)) => {
                    if let Some(alias) = &new.alias
                        && self.get_item(alias_key(alias))?.is_some()
                    {
                        return Err(StoreError::AliasTaken(alias.clone()));
                    }
                    if self.get_item(sandbox_key(&new.id))?.is_some() {
                        return Err(StoreError::Exists(new.id.clone()));
                    }
                    attempt += 1;
                    if attempt == CONFLICT_RETRIES {
                        return Err(StoreError::Backend(format!(
                            "recording sandbox {} kept conflicting with other writes: {why}",
                            new.id
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
                }
                Err(other) => return Err(backend(other)),
            }
        }
        self.get(&new.id)?.ok_or_else(|| {
            StoreError::Backend(format!(
                "sandbox {} vanished right after it was recorded",
                new.id
            ))
        })
    }

    fn get(&self, id: &SandboxId) -> Result<Option<SandboxRecord>, StoreError> {
        self.get_item(sandbox_key(id))?
            .map(|item| self.readable(&item))
            .transpose()
    }

    fn get_by_alias(&self, alias: &Alias) -> Result<Option<SandboxRecord>, StoreError> {
        self.claimed_id(alias_key(alias))
    }

    fn get_by_number(&self, number: u32) -> Result<Option<SandboxRecord>, StoreError> {
        self.claimed_id(number_key(number))
    }

    fn list(&self) -> Result<Vec<SandboxRecord>, StoreError> {
        let mut records = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = block_on(&self.runtime, async {
                self.client
                    .scan()
                    .table_name(&self.table)
                    .filter_expression("begins_with(pk, :sandbox)")
                    .expression_attribute_values(":sandbox", s("sandbox#"))
                    .consistent_read(true)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| backend(AwsFailure::from_sdk(e)))
            })?;
            // A record km cannot read fails the listing, as in SQLite: dropping it would hide
            // a sandbox that still costs money.
            for item in page.items() {
                records.push(self.readable(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        records.sort_by_key(|r| r.number);
        Ok(records)
    }

    fn set_status(&self, id: &SandboxId, status: Status) -> Result<(), StoreError> {
        self.update(id, "SET #s = :v", vec![(":v", s(status.as_str()))])
    }

    fn set_locked(&self, id: &SandboxId, holder: Option<&LockHolder>) -> Result<(), StoreError> {
        match holder {
            Some(holder) => self.update(
                id,
                "SET locked = :v, locked_by = :by, locked_at = :at",
                vec![
                    (":v", AttributeValue::Bool(true)),
                    (":by", s(&holder.by)),
                    (":at", AttributeValue::N(holder.since.to_string())),
                ],
            ),
            None => self.update(
                id,
                "SET locked = :v REMOVE locked_by, locked_at",
                vec![(":v", AttributeValue::Bool(false))],
            ),
        }
    }

    fn set_key_fingerprint(
        &self,
        id: &SandboxId,
        fingerprint: Option<&str>,
    ) -> Result<(), StoreError> {
        match fingerprint {
            Some(fp) => self.update(id, "SET key_fingerprint = :v", vec![(":v", s(fp))]),
            None => self.update(id, "REMOVE key_fingerprint", Vec::new()),
        }
    }

    fn set_resources(&self, id: &SandboxId, resources: &Resources) -> Result<(), StoreError> {
        self.update(
            id,
            "SET resources = :v",
            vec![(
                ":v",
                s(serde_json::to_string(resources)
                    .map_err(|e| StoreError::Backend(e.to_string()))?),
            )],
        )
    }

    fn delete(&self, id: &SandboxId) -> Result<(), StoreError> {
        let Some(record) = self.get(id)? else {
            return Ok(());
        };
        // The number claim stays: numbers are never handed out again.
        let mut items = vec![self.delete_of(sandbox_key(id))?];
        if let Some(alias) = &record.alias {
            let delete = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(alias_key(alias)))
                .condition_expression("attribute_not_exists(pk) OR id = :id")
                .expression_attribute_values(":id", s(id.as_str()))
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        self.transact(items).map_err(backend)
    }
}
