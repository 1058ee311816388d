//! The EC2 command channel: a script sent with SSM SendCommand (`AWS-RunShellScript`) to one
//! instance in its own region, its invocation polled until it ends.
//!
//! Only "not delivered yet" (`InvocationDoesNotExist`) and throttling are retried, each
//! within a budget; everything else is reported at once with the command that shows more.
//! Output SSM cut at its limits is flagged, never passed off as complete.

use std::time::{Duration, Instant};

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::CommandInvocationStatus;
use km_core::id::SandboxId;
use km_core::platform::PlatformError;
use km_core::userdata::shell_quote;

use crate::failure::AwsFailure;

/// The SSM agent keeps the first 24,000 **bytes** of a command's stdout (it reads the stream
/// byte by byte up to `MaxStdoutLength`; amazon-ssm-agent, `iohandler.DefaultOutputConfig`).
pub const STDOUT_LIMIT: usize = 24_000;
/// The SSM agent keeps the first 8,000 bytes of a command's stderr (`MaxStderrLength`).
pub const STDERR_LIMIT: usize = 8_000;
/// What the agent appends to output it cut (`OutputTruncatedSuffix`).
pub(crate) const TRUNCATED_SUFFIX: &str = "--output truncated--";
/// How long a command may stay undelivered before the agent is taken to be offline.
const DELIVERY_BUDGET: Duration = Duration::from_secs(20);
/// How long km keeps polling through throttling before giving up.
const THROTTLE_BUDGET: Duration = Duration::from_secs(30);
/// Time for SSM to report an invocation after its script has timed out.
const REPORT_GRACE: Duration = Duration::from_secs(30);
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_CAP: Duration = Duration::from_secs(2);
/// SendCommand's own delivery timeout (its minimum).
const DELIVERY_TIMEOUT_SECONDS: i32 = 30;

/// The instance a command goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) instance_id: &'a str,
    pub(crate) region: &'a str,
    pub(crate) sandbox: &'a SandboxId,
}

impl Target<'_> {
    fn check_command(&self) -> String {
        format!(
            "aws ssm describe-instance-information --filters Key=InstanceIds,Values={} --region {}",
            self.instance_id, self.region
        )
    }

    /// The error for an instance SSM will not talk to.
    pub(crate) fn unmanaged(&self) -> PlatformError {
        PlatformError::Channel(format!(
            "instance {} of sandbox {} is not reachable through SSM: it is stopped, its SSM agent is not running, or it has no instance profile that allows SSM (see docs/aws.md); check: {}",
            self.instance_id,
            self.sandbox,
            self.check_command()
        ))
    }

    /// The error for an instance that refuses commands, told apart by what SSM's inventory says:
    /// SSM answers `InvalidInstanceId` both for an agent that has not registered and for a caller
    /// who may not reach the node (SendCommand's errors:
    /// <https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html>).
    pub(crate) fn refused(&self, registration: &Registration) -> PlatformError {
        match registration {
            Registration::Online => PlatformError::Channel(format!(
                "SSM lists instance {} of sandbox {} as online, yet refuses your commands to it (InvalidInstanceId): your AWS identity may not run commands on it — allow ssm:SendCommand on arn:aws:ec2:{}:<account>:instance/{} and on the document AWS-RunShellScript (the policy is in docs/aws.md); check: {}",
                self.instance_id,
                self.sandbox,
                self.region,
                self.instance_id,
                self.check_command()
            )),
            Registration::NotOnline(_) | Registration::Unknown(_) => self.unmanaged(),
        }
    }

    fn failure(&self, failure: AwsFailure) -> Failure {
        match failure {
            AwsFailure::NotManaged(_) => Failure::NotManaged,
            AwsFailure::Credentials(_) => {
                Failure::Platform(PlatformError::Credentials(failure.to_string()))
            }
            other => Failure::Platform(PlatformError::Channel(other.to_string())),
        }
    }
}

/// What SSM's inventory (`DescribeInstanceInformation`) says of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Registration {
    /// Its agent is registered and pinging: a refusal is about the caller, not the instance.
    Online,
    /// Not listed, or listed with this ping status (`ConnectionLost`, `Inactive`).
    NotOnline(String),
    /// The inventory could not be read (often: no `ssm:DescribeInstanceInformation`).
    Unknown(String),
}

/// Asks SSM whether the instance's agent is registered and online.
pub(crate) async fn registration(ssm: &Client, target: Target<'_>) -> Registration {
    let filter = match aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
        .key("InstanceIds")
        .values(target.instance_id)
        .build()
    {
        Ok(filter) => filter,
        Err(e) => return Registration::Unknown(e.to_string()),
    };
    match ssm
        .describe_instance_information()
        .filters(filter)
        .send()
        .await
    {
        Ok(out) => match out
            .instance_information_list()
            .iter()
            .find(|node| node.instance_id() == Some(target.instance_id))
        {
            Some(node) if node.ping_status() == Some(&aws_sdk_ssm::types::PingStatus::Online) => {
                Registration::Online
            }
            Some(node) => Registration::NotOnline(
                node.ping_status()
                    .map_or("no ping status", |status| status.as_str())
                    .to_owned(),
            ),
            None => Registration::NotOnline("not registered".into()),
        },
        Err(e) => Registration::Unknown(AwsFailure::from_sdk(e).to_string()),
    }
}

/// Why a command did not run to an end.
#[derive(Debug)]
pub(crate) enum Failure {
    /// SSM will not talk to the instance (yet, while it boots; or at all).
    NotManaged,
    /// SSM accepted the command but did not deliver it: the instance is stopped or its agent
    /// is offline (or not back yet after a start). Said in full, cancellation included.
    Undelivered(PlatformError),
    /// Anything else, ready to report.
    Platform(PlatformError),
}

impl Failure {
    /// The error to report.
    pub(crate) fn report(self, target: Target<'_>) -> PlatformError {
        match self {
            Self::NotManaged => target.unmanaged(),
            Self::Undelivered(error) | Self::Platform(error) => error,
        }
    }
}

impl From<PlatformError> for Failure {
    fn from(error: PlatformError) -> Self {
        Self::Platform(error)
    }
}

/// What an invocation ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finished {
    pub(crate) exit_code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) timed_out: bool,
    /// SSM cut stdout or stderr at its limit: what is here is not all there was.
    pub(crate) truncated: bool,
    /// The operator pressed Ctrl-C and the command was cancelled.
    pub(crate) interrupted: bool,
}

/// Whether Ctrl-C cancels the command (an operator's own command), or is left to km's
/// default handling (km's internal scripts, some inside a held-signal section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnInterrupt {
    Cancel,
    Ignore,
}

/// Wraps `script` so it runs as the sandbox user, in its home, with `$HOME` set; SSM itself
/// runs scripts as root. `KM_ROOT` is empty on a real instance.
pub(crate) fn as_sandbox_user(script: &str) -> String {
    format!(
        "home=\"${{KM_ROOT:-}}/home/sandbox\"\ncd \"$home\" || exit 125\n\
         exec runuser -u sandbox -- env HOME=\"$home\" /bin/sh -c {}\n",
        shell_quote(script)
    )
}

/// Whether SSM cut either stream: it counts bytes, so a few thousand non-ASCII characters
/// already fill it; and it marks what it cut.
fn is_truncated(stdout: &str, stderr: &str) -> bool {
    stdout.len() >= STDOUT_LIMIT
        || stderr.len() >= STDERR_LIMIT
        || stdout.ends_with(TRUNCATED_SUFFIX)
        || stderr.ends_with(TRUNCATED_SUFFIX)
}

/// The output as the command wrote it: without the agent's mark of a cut.
fn without_mark(text: &str) -> &str {
    text.strip_suffix(TRUNCATED_SUFFIX).unwrap_or(text)
}

/// Sends `script` and waits for its result; `timeout` bounds the script itself.
pub(crate) async fn run(
    ssm: &Client,
    target: Target<'_>,
    script: &str,
    timeout: Duration,
    on_interrupt: OnInterrupt,
) -> Result<Finished, Failure> {
    let execution_seconds = timeout.as_secs().clamp(1, 172_800);
    // Listening starts before the command is sent, so no Ctrl-C goes unseen.
    let mut interrupts = match on_interrupt {
        OnInterrupt::Cancel => Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| PlatformError::Channel(format!("cannot listen for Ctrl-C: {e}")))?,
        ),
        OnInterrupt::Ignore => None,
    };
    let sent = ssm
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(target.instance_id)
        .comment(format!("km {}", target.sandbox))
        .timeout_seconds(DELIVERY_TIMEOUT_SECONDS)
        .parameters("commands", vec![script.to_owned()])
        .parameters("executionTimeout", vec![execution_seconds.to_string()])
        .send()
        .await
        .map_err(|e| target.failure(AwsFailure::from_sdk(e)))?;
    let command_id = sent
        .command()
        .and_then(|c| c.command_id())
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::Platform(PlatformError::Channel(
                "SendCommand returned no command ID".into(),
            ))
        })?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(execution_seconds) + REPORT_GRACE;
    let mut throttled_since: Option<Instant> = None;
    let mut pause = POLL_FIRST;
    loop {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            Some(()) = async {
                match interrupts.as_mut() {
                    Some(signals) => signals.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                cancel(ssm, target, &command_id).await?;
                return Ok(Finished {
                    exit_code: 130,
                    stdout: String::new(),
                    stderr: String::new(),
                    timed_out: false,
                    truncated: false,
                    interrupted: true,
                });
            }
        }
        pause = (pause * 3 / 2).min(POLL_CAP);
        let polled = ssm
            .get_command_invocation()
            .command_id(&command_id)
            .instance_id(target.instance_id)
            .send()
            .await;
        let invocation = match polled {
            Ok(invocation) => invocation,
            Err(error) => match AwsFailure::from_sdk(error) {
                AwsFailure::NotYetDelivered(_) if started.elapsed() < DELIVERY_BUDGET => continue,
                AwsFailure::NotYetDelivered(_) => {
                    return Err(undelivered(ssm, target, &command_id, "did not deliver it").await);
                }
                AwsFailure::Throttled(why) => {
                    let since = *throttled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < THROTTLE_BUDGET {
                        pause = POLL_CAP;
                        continue;
                    }
                    return Err(target.failure(AwsFailure::Throttled(why)));
                }
                other => return Err(target.failure(other)),
            },
        };
        throttled_since = None;
        let stdout = invocation.standard_output_content().unwrap_or_default();
        let stderr = invocation.standard_error_content().unwrap_or_default();
        let finished = |timed_out: bool| Finished {
            exit_code: if timed_out {
                -1
            } else {
                invocation.response_code()
            },
            stdout: without_mark(stdout).to_owned(),
            stderr: without_mark(stderr).to_owned(),
            timed_out,
            truncated: is_truncated(stdout, stderr),
            interrupted: false,
        };
        match invocation.status() {
            Some(CommandInvocationStatus::Success | CommandInvocationStatus::Failed) => {
                return Ok(finished(false));
            }
            // Both timeouts end as TimedOut; only the details say whether the script ran.
            Some(CommandInvocationStatus::TimedOut)
                if invocation.status_details() == Some("DeliveryTimedOut") =>
            {
                return Err(undelivered(ssm, target, &command_id, "timed out delivering it").await);
            }
            Some(CommandInvocationStatus::TimedOut) => return Ok(finished(true)),
            // Pending (or Delayed) past the budget: the instance is stopped or its agent is
            // offline; a command left waiting would run later, unobserved.
            Some(CommandInvocationStatus::Pending | CommandInvocationStatus::Delayed)
                if started.elapsed() > DELIVERY_BUDGET =>
            {
                return Err(undelivered(ssm, target, &command_id, "did not deliver it").await);
            }
            Some(CommandInvocationStatus::Cancelled) => {
                return Err(Failure::Platform(PlatformError::Channel(format!(
                    "command {command_id} on instance {} was cancelled by someone else",
                    target.instance_id
                ))));
            }
            Some(
                CommandInvocationStatus::Pending
                | CommandInvocationStatus::InProgress
                | CommandInvocationStatus::Delayed
                | CommandInvocationStatus::Cancelling,
            )
            | None => {}
            Some(other) => {
                return Err(Failure::Platform(PlatformError::Channel(format!(
                    "SSM could not run command {command_id} on instance {} of sandbox {} ({}: {}); check: {}",
                    target.instance_id,
                    target.sandbox,
                    other.as_str(),
                    invocation.status_details().unwrap_or_default(),
                    target.check_command()
                ))));
            }
        }
        if Instant::now() > deadline {
            cancel(ssm, target, &command_id).await?;
            return Ok(finished(true));
        }
    }
}

/// Cancels a command SSM has not delivered (a command delivered later must not run
/// unobserved) and says so, with whether the cancel worked and what to check.
async fn undelivered(ssm: &Client, target: Target<'_>, command_id: &str, what: &str) -> Failure {
    let cancelled = match cancel(ssm, target, command_id).await {
        Ok(()) => "it was cancelled".to_owned(),
        Err(why) => why.to_string(),
    };
    Failure::Undelivered(PlatformError::Channel(format!(
        "SSM accepted command {command_id} for instance {} of sandbox {} but {what} within {}s ({cancelled}): the instance is stopped, or its SSM agent is offline or has lost its permission (instance profile); check: {}",
        target.instance_id,
        target.sandbox,
        DELIVERY_BUDGET.as_secs(),
        target.check_command()
    )))
}

async fn cancel(ssm: &Client, target: Target<'_>, command_id: &str) -> Result<(), PlatformError> {
    ssm.cancel_command()
        .command_id(command_id)
        .instance_ids(target.instance_id)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            PlatformError::Channel(format!(
                "could not cancel command {command_id} on instance {} ({}); it may still be running there",
                target.instance_id,
                AwsFailure::from_sdk(e)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_at_ssms_limits_counts_as_truncated() {
        assert!(!is_truncated("short", ""));
        assert!(is_truncated(&"x".repeat(STDOUT_LIMIT), ""));
        assert!(is_truncated("", &"é".repeat(STDERR_LIMIT / 2)));
        // 12,000 characters, 24,000 bytes: full by SSM's count.
        assert!(is_truncated(&"é".repeat(STDOUT_LIMIT / 2), ""));
        assert!(!is_truncated(&"é".repeat(STDOUT_LIMIT / 2 - 1), ""));
        assert!(is_truncated(&format!("short{TRUNCATED_SUFFIX}"), ""));
        assert_eq!(without_mark(&format!("kept{TRUNCATED_SUFFIX}")), "kept");
    }

    #[test]
    fn the_sandbox_user_wrapper_quotes_the_script_whole() {
        let wrapped = as_sandbox_user("echo 'it''s' \"$HOME\"");
        assert!(wrapped.contains("runuser -u sandbox --"));
        assert!(wrapped.contains(&shell_quote("echo 'it''s' \"$HOME\"")));
    }
}
