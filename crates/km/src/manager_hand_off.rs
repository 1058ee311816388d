//! `km create --remote` and `km destroy --remote` on AWS: the request is written as a `queued`
//! item in the team table, handed to the management Lambda function as an `Event` invocation,
//! and followed until the manager writes its end.
//!
//! Nothing is left that `km list` hides: a request the function never picks up is withdrawn
//! (with the keypair made for it) after a bounded wait, and so is one the operator abandons with
//! Ctrl-C before the manager claimed it. Once claimed, a request runs to its end in Lambda.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use km_aws::{AwsFailure, RequestItem, RequestState, RequestTable};
use km_core::id::{Alias, SandboxId};
use km_core::profile::Profile;

use crate::cli::CreateArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::interrupts::{INTERRUPTED_EXIT, Interrupts};
use crate::ops::operator_state::forget_operator_state;
use crate::ui;

/// How long a request may wait for the function to pick it up, unless
/// `KM_REMOTE_PICKUP_SECONDS` says otherwise.
const PICKUP_DEFAULT: Duration = Duration::from_secs(120);
/// Lambda retries a failed asynchronous invocation twice, after about one and then two minutes
/// (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>).
const ATTEMPTS: u64 = 3;
const RETRY_PAUSES: Duration = Duration::from_secs(3 * 60);
const POLL: Duration = Duration::from_millis(500);

/// The management function and where its requests are kept.
struct Manager {
    target: km_aws::ManagerTarget,
    deployed: km_aws::DeployedManager,
    table: km_aws::AwsSettings,
}

impl Manager {
    fn of(context: &Context) -> CommandResult<Self> {
        let (target, deployed, table) = crate::platforms::aws_hand_off_target(context)?;
        Ok(Self {
            target,
            deployed,
            table,
        })
    }

    fn logs(&self) -> String {
        format!(
            "aws logs tail /aws/lambda/{} --since 1h --region {}",
            self.target.function, self.target.region
        )
    }

    /// How long a claimed request can take before every attempt Lambda makes has ended.
    fn longest_run(&self) -> Duration {
        Duration::from_secs(ATTEMPTS * self.deployed.timeout_seconds) + RETRY_PAUSES
    }
}

pub(crate) fn pickup_wait() -> Duration {
    std::env::var("KM_REMOTE_PICKUP_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(PICKUP_DEFAULT, Duration::from_secs)
}

fn table_failure(what: &str, failure: AwsFailure) -> CommandError {
    CommandError::user(format!("cannot {what}")).cause(failure)
}

/// What happened to a handed-off request.
enum Followed {
    /// The manager wrote its end (`done` or `failed`).
    Ended(RequestItem),
    /// Withdrawn before any manager claimed it: nothing was made. The error says why.
    Withdrawn(CommandError, bool),
    /// It goes on without this km: the error says how to follow it.
    Left(CommandError),
}

/// A request handed off: the request, what it is called in messages, and what to run to
/// follow it.
struct Asked<'a> {
    request_id: &'a str,
    kind: &'a str,
    sandbox: &'a SandboxId,
    request: &'a serde_json::Value,
    what: String,
    follow: String,
}

/// Writes the request item, invokes the function, and waits for the request's end. A request
/// that could not be handed off is withdrawn before this returns an error.
fn hand_off(
    manager: &Manager,
    requests: &RequestTable,
    asked: &Asked<'_>,
    operator: &str,
    wait: bool,
) -> CommandResult<Option<Followed>> {
    let request_id = asked.request_id;
    // Held from before the request exists, so a Ctrl-C can always withdraw it.
    let interrupts = Interrupts::hold()
        .map_err(|e| CommandError::user("cannot install km's signal handlers").cause(e))?;
    requests
        .queue(request_id, asked.kind, asked.sandbox.as_str(), operator)
        .map_err(|f| {
            table_failure(
                &format!(
                    "queue request {request_id} in table {}",
                    manager.table.table
                ),
                f,
            )
        })?;
    let payload = serde_json::to_vec(asked.request)
        .map_err(|e| CommandError::internal(format!("cannot encode the request: {e}")))?;
    if let Err(failure) = km_aws::invoke_event(&manager.target, payload) {
        let denied = matches!(failure, AwsFailure::AccessDenied(_));
        let mut error = CommandError::user(format!(
            "Lambda function {} in {} did not take the request to {}",
            manager.target.function, manager.target.region, asked.what
        ))
        .cause(failure);
        error = match requests.withdraw(request_id) {
            Ok(true) => error.cause("the request was withdrawn; nothing was made"),
            _ => error.cause(format!(
                "request {request_id} may still be queued in table {}",
                manager.table.table
            )),
        };
        if denied {
            error = error.hint(format!(
                "allow lambda:InvokeFunction on {} for your identity (docs/aws-management.md)",
                manager.target.function
            ));
        }
        return Err(error);
    }
    ui::status(&format!(
        "✓ Request to {} handed to Lambda function {} in {}",
        asked.what, manager.target.function, manager.target.region
    ));
    if !wait {
        return Ok(None);
    }
    Ok(Some(follow(manager, requests, asked, &interrupts)?))
}

/// Polls the request item until the manager writes its end, or km gives up on it.
fn follow(
    manager: &Manager,
    requests: &RequestTable,
    asked: &Asked<'_>,
    interrupts: &Interrupts,
) -> CommandResult<Followed> {
    let request_id = asked.request_id;
    let started = Instant::now();
    let pickup_by = started + pickup_wait();
    let give_up = pickup_by + manager.longest_run();
    let mut spinner = ui::Spinner::start(&format!("{} (queued)", asked.what));
    let mut shown = RequestState::Queued;
    loop {
        if interrupts.received() {
            drop(spinner);
            return Ok(match requests.withdraw(request_id) {
                Ok(true) => Followed::Withdrawn(
                    CommandError::user(format!(
                        "interrupted: the request to {} was withdrawn before the manager took it; nothing was made",
                        asked.what
                    )),
                    true,
                ),
                _ => Followed::Left(
                    CommandError::user(format!(
                        "interrupted: the manager already took the request to {}, so it goes on in Lambda",
                        asked.what
                    ))
                    .hint(asked.follow.clone()),
                ),
            });
        }
        let item = requests.get(request_id).map_err(|f| {
            table_failure(&format!("read request {request_id}"), f).hint(asked.follow.clone())
        })?;
        let Some(item) = item else {
            return Err(CommandError::user(format!(
                "request {request_id} vanished from table {} before it ended",
                manager.table.table
            ))
            .hint(asked.follow.clone()));
        };
        match item.state {
            RequestState::Done | RequestState::Failed => {
                drop(spinner);
                // The operator has read it: the item goes now rather than with the TTL (which
                // removes it anyway if this fails; nothing claims it was removed).
                let _ = requests.remove(request_id);
                return Ok(Followed::Ended(item));
            }
            RequestState::Queued if Instant::now() > pickup_by => {
                if let Ok(true) = requests.withdraw(request_id) {
                    drop(spinner);
                    return Ok(Followed::Withdrawn(
                        CommandError::user(format!(
                            "Lambda function {} did not pick up the request to {} within {}s; it was withdrawn and nothing was made",
                            manager.target.function,
                            asked.what,
                            pickup_wait().as_secs()
                        ))
                        .cause("the function may be throttled, failing to start, or missing permissions for the table")
                        .hint(format!("read its log: {}", manager.logs())),
                        false,
                    ));
                }
            }
            RequestState::Queued | RequestState::Running if Instant::now() > give_up => {
                drop(spinner);
                return Ok(Followed::Left(
                    CommandError::user(format!(
                        "the request to {} is still {} after {}s, longer than every attempt Lambda makes",
                        asked.what,
                        item.state.as_str(),
                        started.elapsed().as_secs()
                    ))
                    .cause(format!("read the function's log: {}", manager.logs()))
                    .hint(asked.follow.clone()),
                ));
            }
            state => {
                if state != shown {
                    shown = state;
                    drop(spinner);
                    spinner = ui::Spinner::start(&format!("{} ({})", asked.what, state.as_str()));
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// What a withdrawn or abandoned request leaves: the error, after the keypair made for it is
/// removed when nothing was made.
fn not_made(context: &Context, id: &SandboxId, error: CommandError) -> CommandError {
    match forget_operator_state(context, id) {
        Ok(()) => error.cause(format!("the keypair made for {id} was removed")),
        Err(e) => error.cause(format!(
            "the keypair made for {id} could not be removed ({}); km doctor --fix removes it",
            e.message
        )),
    }
}

/// `km create --remote` on AWS: the keypair is made here, the sandbox by the Lambda manager.
pub(crate) fn create_remote(
    context: &Context,
    args: &CreateArgs,
    profile: &Profile,
    alias: Option<Alias>,
) -> CommandResult<ExitCode> {
    let manager = &Manager::of(context)?;
    let requests = RequestTable::open(&manager.table)
        .map_err(|f| table_failure("reach the request table", f))?;
    let operator = crate::settings::operator(context)?;
    let (id, request_id, request) =
        crate::remote_request::create_request(context, args, profile, alias)?;
    let asked = Asked {
        request_id: &request_id,
        kind: "create",
        sandbox: &id,
        request: &request,
        what: format!("create {id}"),
        follow: format!(
            "follow it with km list; once {id} is running, km vscode start {id} pins its host key and connects"
        ),
    };
    let followed = hand_off(manager, &requests, &asked, operator.as_str(), !args.no_wait);
    let followed = match followed {
        Ok(followed) => followed,
        Err(error) => return Err(not_made(context, &id, error)),
    };
    let item = match followed {
        None => {
            ui::data(id.as_str());
            ui::status(&format!(
                "next: km list shows {id} once the manager has started it; then km vscode start {id}"
            ));
            return Ok(ExitCode::SUCCESS);
        }
        Some(Followed::Ended(item)) => item,
        Some(Followed::Withdrawn(error, interrupted)) => {
            let error = not_made(context, &id, error);
            if interrupted {
                ui::print_error(&error);
                return Ok(ExitCode::from(INTERRUPTED_EXIT));
            }
            return Err(error);
        }
        Some(Followed::Left(error)) => return Err(error),
    };
    if item.state == RequestState::Failed {
        let error = CommandError::user(format!("the management component could not create {id}"))
            .cause(item.error.unwrap_or_else(|| "no reason given".into()));
        return Err(not_made(context, &id, error).hint(format!("its log: {}", manager.logs())));
    }
    crate::remote_request::created_remotely(context, &id, profile)
}

/// `km destroy --remote` on AWS: the Lambda manager destroys; this machine's keys, Host entry
/// and pin go once it reports the sandbox gone.
pub(crate) fn destroy_remote(
    context: &Context,
    id: &SandboxId,
    request_id: &str,
    request: serde_json::Value,
) -> CommandResult<ExitCode> {
    let manager = &Manager::of(context)?;
    let requests = RequestTable::open(&manager.table)
        .map_err(|f| table_failure("reach the request table", f))?;
    let operator = crate::settings::operator(context)?;
    let asked = Asked {
        request_id,
        kind: "destroy",
        sandbox: id,
        request: &request,
        what: format!("destroy {id}"),
        follow: format!(
            "follow it with km list; once {id} is gone, km doctor --fix removes this machine's key, ssh config entry and host key pin for it"
        ),
    };
    let followed = hand_off(manager, &requests, &asked, operator.as_str(), true)?;
    let item = match followed {
        Some(Followed::Ended(item)) => item,
        Some(Followed::Withdrawn(error, interrupted)) => {
            if interrupted {
                ui::print_error(&error);
                return Ok(ExitCode::from(INTERRUPTED_EXIT));
            }
            return Err(error);
        }
        Some(Followed::Left(error)) => return Err(error),
        None => return Ok(ExitCode::SUCCESS),
    };
    if item.state == RequestState::Failed {
        return Err(
            CommandError::user(format!("the management component could not destroy {id}"))
                .cause(item.error.unwrap_or_else(|| "no reason given".into()))
                .hint(format!(
                    "its log: {}; or destroy it from here: km destroy {id} --yes",
                    manager.logs()
                )),
        );
    }
    forget_operator_state(context, id)?;
    ui::status(&format!(
        "✓ Sandbox {id} destroyed by the management component (keys, ssh config entry and host key pin removed here)"
    ));
    Ok(ExitCode::SUCCESS)
}

/// Requests that waited for a manager longer than `km create --remote` would, and requests
/// whose manager attempt ended without writing their end. With `fix`, a waiting one is
/// withdrawn, with this machine's keypair for it.
pub(crate) fn stale_requests(
    context: &Context,
    fix: bool,
) -> Result<Vec<crate::manager_protocol::StaleRequest>, String> {
    let Some(table) = crate::platforms::aws_manager_table(context)? else {
        return Ok(Vec::new());
    };
    let requests = RequestTable::open(&table).map_err(|f| f.to_string())?;
    let now = km_aws::now_seconds();
    let mut stale = Vec::new();
    for item in requests.unfinished().map_err(|f| f.to_string())? {
        let waited = now.saturating_sub(item.queued_at.unwrap_or(now));
        match item.state {
            RequestState::Queued if waited > pickup_wait().as_secs() => {
                let fixed = fix.then(|| withdraw_stale(context, &requests, &item));
                stale.push(crate::manager_protocol::StaleRequest {
                    detail: format!(
                        "request {} to {} {} has waited {waited}s for the management function to pick it up; km doctor --fix withdraws it",
                        item.request_id, item.kind, item.sandbox_id
                    ),
                    fixed,
                });
            }
            RequestState::Running
                if item
                    .claim_deadline_ms
                    .is_some_and(|ends| ends / 1000 + RETRY_PAUSES.as_secs() < now) =>
            {
                stale.push(crate::manager_protocol::StaleRequest {
                    detail: format!(
                        "request {} to {} {} was left running by a manager attempt that ended; km list shows the sandbox, km destroy {} --yes --force removes it",
                        item.request_id, item.kind, item.sandbox_id, item.sandbox_id
                    ),
                    fixed: None,
                });
            }
            _ => {}
        }
    }
    Ok(stale)
}

fn withdraw_stale(
    context: &Context,
    requests: &RequestTable,
    item: &RequestItem,
) -> Result<String, String> {
    if !requests
        .withdraw(&item.request_id)
        .map_err(|f| f.to_string())?
    {
        return Err("a manager took it meanwhile".into());
    }
    if item.kind == "create"
        && let Ok(id) = item.sandbox_id.parse::<SandboxId>()
    {
        forget_operator_state(context, &id).map_err(|e| e.one_line())?;
    }
    Ok("withdrawn".into())
}
