//! The management component's requests on AWS: one item per request in the team's table,
//! beside the sandbox records, moved from state to state by conditional writes only.
//!
//! Items `request#<request-id>`: `kind` (`create`, `destroy`), `sandbox_id`, `state` (`queued`
//! → `running` → `done` | `failed`), `error`, who asked (`requested_by`), which Lambda attempt
//! holds it (`claimed_by`) until when (`claim_deadline`, epoch ms), and `expires_at` (epoch
//! seconds) for the table's TTL. The operator's km writes `queued` and may withdraw the item
//! while it is still `queued`; the manager claims it, performs it and writes the end state.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::connect::{AwsSettings, block_on, runtime, sdk_config};
use crate::failure::AwsFailure;

type Item = HashMap<String, AttributeValue>;

/// How long a request item is kept after it was last written (DynamoDB's TTL removes it).
const KEEP_SECONDS: u64 = 7 * 24 * 3600;

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Written by the operator; no manager has it yet.
    Queued,
    /// A manager attempt claimed it.
    Running,
    /// Performed.
    Done,
    /// Not performed; `error` says why.
    Failed,
}

impl RequestState {
    /// The word stored in the item.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// One request item as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestItem {
    pub request_id: String,
    pub kind: String,
    pub sandbox_id: String,
    pub state: RequestState,
    pub error: Option<String>,
    pub requested_by: Option<String>,
    pub claimed_by: Option<String>,
    /// When the attempt that claimed it ends at the latest (epoch milliseconds).
    pub claim_deadline_ms: Option<u64>,
    /// When the operator queued it (epoch seconds).
    pub queued_at: Option<u64>,
}

/// What a manager attempt got when it tried to claim a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// It is this attempt's now.
    Claimed,
    /// No such item: the operator withdrew it (or it expired).
    Gone,
    /// Already claimed or finished; as it stands.
    Taken(RequestItem),
}

fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

fn n(number: u64) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

fn key(request_id: &str) -> String {
    format!("request#{request_id}")
}

/// Now, in epoch seconds.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn item_of(item: &Item) -> Option<RequestItem> {
    Some(RequestItem {
        request_id: text(item, "request_id")?,
        kind: text(item, "kind")?,
        sandbox_id: text(item, "sandbox_id")?,
        state: RequestState::parse(&text(item, "state")?)?,
        error: text(item, "error"),
        requested_by: text(item, "requested_by"),
        claimed_by: text(item, "claimed_by"),
        claim_deadline_ms: number(item, "claim_deadline"),
        queued_at: number(item, "queued_at"),
    })
}

/// The request items of one table.
#[derive(Debug)]
pub struct RequestTable {
    runtime: tokio::runtime::Runtime,
    client: Client,
    table: String,
}

impl RequestTable {
    /// The request items in the record table of `settings`.
    pub fn open(settings: &AwsSettings) -> Result<Self, AwsFailure> {
        let runtime = runtime().map_err(|e| AwsFailure::Other(e.to_string()))?;
        let client = block_on(&runtime, async {
            Client::new(&sdk_config(&settings.region).await)
        });
        Ok(Self {
            runtime,
            client,
            table: settings.table.clone(),
        })
    }

    /// Writes a new `queued` request; fails if one with this ID exists.
    pub fn queue(
        &self,
        request_id: &str,
        kind: &str,
        sandbox_id: &str,
        requested_by: &str,
    ) -> Result<(), AwsFailure> {
        let mut item = Item::new();
        item.insert("pk".into(), s(key(request_id)));
        item.insert("request_id".into(), s(request_id));
        item.insert("kind".into(), s(kind));
        item.insert("sandbox_id".into(), s(sandbox_id));
        item.insert("state".into(), s(RequestState::Queued.as_str()));
        item.insert("requested_by".into(), s(requested_by));
        item.insert("queued_at".into(), n(now_seconds()));
        item.insert("expires_at".into(), n(now_seconds() + KEEP_SECONDS));
        block_on(&self.runtime, async {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await
                .map(|_| ())
                .map_err(AwsFailure::from_sdk)
        })
    }

    /// The request as it stands (a strongly consistent read).
    pub fn get(&self, request_id: &str) -> Result<Option<RequestItem>, AwsFailure> {
        let item = block_on(&self.runtime, async {
            self.client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(key(request_id)))
                .consistent_read(true)
                .send()
                .await
                .map(|out| out.item)
                .map_err(AwsFailure::from_sdk)
        })?;
        match item {
            None => Ok(None),
            Some(item) => item_of(&item).map(Some).ok_or_else(|| {
                AwsFailure::Other(format!(
                    "the item of request {request_id} is not one km can read"
                ))
            }),
        }
    }

    /// Removes the request if no manager has claimed it: `true` when it was withdrawn.
    pub fn withdraw(&self, request_id: &str) -> Result<bool, AwsFailure> {
        let removed = block_on(&self.runtime, async {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(key(request_id)))
                .condition_expression("#st = :queued")
                .expression_attribute_names("#st", "state")
                .expression_attribute_values(":queued", s(RequestState::Queued.as_str()))
                .send()
                .await
        });
        match removed {
            Ok(_) => Ok(true),
            Err(error) => match AwsFailure::from_sdk(error) {
                AwsFailure::ConditionFailed(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Removes a request whose end the operator has read.
    pub fn remove(&self, request_id: &str) -> Result<(), AwsFailure> {
        block_on(&self.runtime, async {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(key(request_id)))
                .send()
                .await
                .map(|_| ())
                .map_err(AwsFailure::from_sdk)
        })
    }

    /// Claims a `queued` request for the attempt `attempt`, which ends by `deadline_ms`.
    pub fn claim(
        &self,
        request_id: &str,
        attempt: &str,
        deadline_ms: u64,
    ) -> Result<Claim, AwsFailure> {
        self.move_claim(request_id, attempt, deadline_ms, None)
    }

    /// Takes over a `running` request whose attempt `from` can no longer be alive.
    pub fn take_over(
        &self,
        request_id: &str,
        from: &str,
        attempt: &str,
        deadline_ms: u64,
    ) -> Result<Claim, AwsFailure> {
        self.move_claim(request_id, attempt, deadline_ms, Some(from))
    }

    fn move_claim(
        &self,
        request_id: &str,
        attempt: &str,
        deadline_ms: u64,
        from: Option<&str>,
    ) -> Result<Claim, AwsFailure> {
        let written = block_on(&self.runtime, async {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(key(request_id)))
                .update_expression(
                    "SET #st = :running, claimed_by = :attempt, claim_deadline = :deadline, expires_at = :expires",
                )
                .expression_attribute_names("#st", "state")
                .expression_attribute_values(":running", s(RequestState::Running.as_str()))
                .expression_attribute_values(":attempt", s(attempt))
                .expression_attribute_values(":deadline", n(deadline_ms))
                .expression_attribute_values(":expires", n(now_seconds() + KEEP_SECONDS));
            update = match from {
                None => update
                    .condition_expression("#st = :queued")
                    .expression_attribute_values(":queued", s(RequestState::Queued.as_str())),
                Some(from) => update
                    .condition_expression("#st = :running AND claimed_by = :from")
                    .expression_attribute_values(":from", s(from)),
            };
            update.send().await
        });
        match written {
            Ok(_) => Ok(Claim::Claimed),
            Err(error) => match AwsFailure::from_sdk(error) {
                AwsFailure::ConditionFailed(_) => Ok(match self.get(request_id)? {
                    None => Claim::Gone,
                    Some(item) => Claim::Taken(item),
                }),
                other => Err(other),
            },
        }
    }

    /// Writes the end of a request the attempt `attempt` holds.
    pub fn finish(
        &self,
        request_id: &str,
        attempt: &str,
        outcome: Result<(), String>,
    ) -> Result<(), AwsFailure> {
        let (state, error) = match outcome {
            Ok(()) => (RequestState::Done, None),
            Err(error) => (RequestState::Failed, Some(error)),
        };
        block_on(&self.runtime, async {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(key(request_id)))
                .condition_expression("claimed_by = :attempt")
                .expression_attribute_names("#st", "state")
                .expression_attribute_values(":state", s(state.as_str()))
                .expression_attribute_values(":attempt", s(attempt))
                .expression_attribute_values(":expires", n(now_seconds() + KEEP_SECONDS));
            update = match error {
                Some(error) => update
                    .update_expression("SET #st = :state, #er = :error, expires_at = :expires")
                    .expression_attribute_names("#er", "error")
                    .expression_attribute_values(":error", s(error)),
                None => update.update_expression("SET #st = :state, expires_at = :expires"),
            };
            update
                .send()
                .await
                .map(|_| ())
                .map_err(AwsFailure::from_sdk)
        })
    }

    /// Every request item still `queued` or `running`.
    pub fn unfinished(&self) -> Result<Vec<RequestItem>, AwsFailure> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = block_on(&self.runtime, async {
                self.client
                    .scan()
                    .table_name(&self.table)
                    .filter_expression(
                        "begins_with(pk, :request) AND (#st = :queued OR #st = :running)",
                    )
                    .expression_attribute_names("#st", "state")
                    .expression_attribute_values(":request", s("request#"))
                    .expression_attribute_values(":queued", s(RequestState::Queued.as_str()))
                    .expression_attribute_values(":running", s(RequestState::Running.as_str()))
                    .consistent_read(true)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(AwsFailure::from_sdk)
            })?;
            found.extend(page.items().iter().filter_map(item_of));
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(found)
    }
}
