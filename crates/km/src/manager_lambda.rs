//! The management component as AWS Lambda runs it: this km started as `bootstrap`, serving one
//! request per invocation through the Lambda Runtime API, with its requests' state in the team
//! table.
//!
//! An invocation carries the request itself (the same JSON, decoded as strictly, as the local
//! manager's queue entries). The request item is claimed before anything is made, so a request
//! the operator withdrew, or one already performed (Lambda may deliver an event twice), is left
//! alone; a request still held by an attempt that can no longer be alive (it crashed, or its
//! time ran out) is taken over and what it made is removed.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use km_aws::{Claim, RequestState, RequestTable};
use km_core::id::SandboxId;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

use crate::context::Context;
use crate::error::{CommandError, CommandResult, io_at};
use crate::manager_protocol::PLATFORM_VAR;
use crate::platforms;
use crate::settings::Settings;
use crate::ui;

/// How often a request held by another live attempt is looked at again.
const HELD_POLL: Duration = Duration::from_secs(2);

/// Whether Lambda started this process as its custom runtime (`bootstrap`).
pub(crate) fn started_by_lambda(args: &[std::ffi::OsString]) -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
        && args
            .first()
            .and_then(|arg0| std::path::Path::new(arg0).file_name())
            .is_some_and(|name| name == "bootstrap")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `km __manager lambda`: serves invocations until Lambda ends the process.
pub(crate) fn serve() -> CommandResult<ExitCode> {
    let text = std::env::var(PLATFORM_VAR).map_err(|_| {
        CommandError::user(format!(
            "the function's environment has no {PLATFORM_VAR}: it was not deployed by km init --aws --sidecars"
        ))
        .hint("km init --aws --region <region> --sidecars --artifact-bucket <bucket>")
    })?;
    let aws: km_aws::AwsSettings = serde_json::from_str(&text).map_err(|e| {
        CommandError::user(format!("{PLATFORM_VAR} is not km's AWS settings"))
            .cause(e)
            .hint("km init --aws --region <region> --sidecars --artifact-bucket <bucket>")
    })?;
    // Lambda's file system is read-only but for /tmp: km's state lives there, per environment.
    let home = std::env::temp_dir().join("km-manager");
    let context = Context::for_home(home);
    km_core::atomic_file::ensure_private_dir(&context.paths.km_dir(), 0o700)
        .map_err(io_at(&context.paths.km_dir()))?;
    let mut settings = Settings {
        platform: platforms::AWS.to_owned(),
        operator: "km-manager".parse().ok(),
        ..Settings::default()
    };
    settings.set_section(
        platforms::AWS,
        &km_aws::SavedSettings {
            platform: aws,
            manager_bucket: None,
            manager_function: None,
        },
    )?;
    settings.save(&context)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::user("cannot start the Lambda runtime loop").cause(e))?;
    runtime
        .block_on(lambda_runtime::run(service_fn(
            move |event: LambdaEvent<Value>| {
                let context = context.clone();
                async move { handle(context, event).await }
            },
        )))
        .map_err(|e| CommandError::user("the Lambda runtime loop ended").cause(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}

async fn handle(
    context: Context,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let attempt = event.context.request_id.clone();
    let deadline_ms = event.context.deadline;
    let payload = event.payload;
    // km's platform code blocks on runtimes of its own: it runs off this runtime's workers.
    tokio::task::spawn_blocking(move || invocation(&context, payload, &attempt, deadline_ms))
        .await
        .map_err(|e| lambda_runtime::Error::from(format!("the request's worker died: {e}")))?
        .map_err(lambda_runtime::Error::from)
}

fn answer(request_id: &str, state: RequestState, error: Option<&str>) -> Value {
    json!({ "request_id": request_id, "state": state.as_str(), "error": error })
}

/// One invocation. An `Err` is an invocation error (Lambda retries it); a request that could
/// not be performed is an `Ok` whose item says `failed`.
fn invocation(
    context: &Context,
    payload: Value,
    attempt: &str,
    deadline_ms: u64,
) -> Result<Value, String> {
    let request_id = payload
        .get("request_id")
        .and_then(Value::as_str)
        .ok_or("the invocation is not a km request: it has no request_id")?
        .to_owned();
    let settings = Settings::load(context).map_err(|e| e.one_line())?;
    let aws = platforms::aws_section(context, &settings)
        .map_err(|e| e.one_line())?
        .ok_or("km's settings hold no AWS platform")?;
    let requests = RequestTable::open(&aws.platform)
        .map_err(|e| format!("cannot reach the request table: {e}"))?;
    let taken_over = loop {
        let claim = requests
            .claim(&request_id, attempt, deadline_ms)
            .map_err(|e| format!("cannot claim request {request_id}: {e}"))?;
        let item = match claim {
            Claim::Claimed => break None,
            Claim::Gone => {
                ui::status(&format!(
                    "request {request_id} was withdrawn before this attempt; nothing to do"
                ));
                return Ok(json!({ "request_id": request_id, "state": "withdrawn" }));
            }
            Claim::Taken(item) if item.state != RequestState::Running => {
                return Ok(answer(&request_id, item.state, item.error.as_deref()));
            }
            Claim::Taken(item) => item,
        };
        let holder = item.claimed_by.clone().unwrap_or_default();
        let holder_ends = item.claim_deadline_ms.unwrap_or(0);
        if holder != attempt && now_ms() < holder_ends {
            // Lambda may deliver one event twice: the other attempt may be at work still, and
            // only its deadline proves it is not.
            if deadline_ms <= holder_ends {
                return Err(format!(
                    "request {request_id} is held by attempt {holder} until {holder_ends}, after this attempt ends"
                ));
            }
            std::thread::sleep(HELD_POLL);
            continue;
        }
        let taken = requests
            .take_over(&request_id, &holder, attempt, deadline_ms)
            .map_err(|e| format!("cannot take over request {request_id}: {e}"))?;
        if taken == Claim::Claimed {
            break Some(item);
        }
    };
    let outcome = match &taken_over {
        None => crate::manager::perform_value(context, &request_id, payload, Some(deadline_ms))
            .map_err(|e| e.one_line()),
        Some(item) => recover(
            context,
            &item.kind,
            &item.sandbox_id,
            item.claimed_by.as_deref(),
            deadline_ms,
        ),
    };
    if let Err(error) = &outcome {
        ui::warn(&format!("request {request_id} failed: {error}"));
    }
    requests
        .finish(&request_id, attempt, outcome.clone())
        .map_err(|e| format!("cannot record the end of request {request_id}: {e}"))?;
    Ok(match outcome {
        Ok(()) => answer(&request_id, RequestState::Done, None),
        Err(error) => answer(&request_id, RequestState::Failed, Some(&error)),
    })
}

/// How long after a create began its platform may still not list what it launched (EC2's
/// eventual consistency: <https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>).
const LISTING_SETTLES: Duration = Duration::from_secs(90);
/// Time kept for the rest of the recovery before this attempt's deadline.
const RECOVERY_MARGIN_MS: u64 = 10_000;

/// A record that names nothing but its creator may belong to a create that died between
/// launching and recording: wait until the platform lists what it launched, as far as this
/// attempt's deadline allows.
fn settle(record: &km_core::record::SandboxRecord, deadline_ms: u64) {
    if !record.resources.platform.is_empty() {
        return;
    }
    let settled_ms = (record.created_at + LISTING_SETTLES.as_secs()) * 1000;
    let until = settled_ms.min(deadline_ms.saturating_sub(RECOVERY_MARGIN_MS));
    let now = now_ms();
    if until > now {
        std::thread::sleep(Duration::from_millis(until - now));
    }
}

/// After an attempt died holding a request: a create is rolled back (whatever it made is
/// removed) and reported failed; a destroy is finished.
fn recover(
    context: &Context,
    kind: &str,
    sandbox: &str,
    holder: Option<&str>,
    deadline_ms: u64,
) -> Result<(), String> {
    let id: SandboxId = sandbox
        .parse()
        .map_err(|e| format!("the request names no sandbox km can read ({sandbox}): {e}"))?;
    let store = platforms::open_store(context).map_err(|e| e.one_line())?;
    let record = store.get(&id).map_err(|e| e.to_string())?;
    if let Some(record) = &record {
        settle(record, deadline_ms);
        let platform = platforms::platform_for(context, record).map_err(|e| e.one_line())?;
        platform.destroy(record).map_err(|e| {
            format!("the manager stopped while performing this request, and removing what it made of {id} failed: {e}; remove it with km destroy {id} --yes --force")
        })?;
        store.delete(&id).map_err(|e| e.to_string())?;
    }
    match kind {
        "destroy" => Ok(()),
        _ => Err(format!(
            "the manager stopped while creating {id} (attempt {}); what it had made was removed",
            holder.unwrap_or("unknown")
        )),
    }
}
