//! AWS errors as one line that says what went wrong and what to do, never an SDK debug dump.

use std::error::Error;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// What kind of AWS failure happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsFailure {
    /// No credentials, or expired or invalid ones.
    Credentials(String),
    /// The caller's identity may not do this.
    AccessDenied(String),
    /// AWS asked km to slow down and retries ran out.
    Throttled(String),
    /// The endpoint could not be reached.
    Unreachable(String),
    /// The named resource does not exist.
    NotFound(String),
    /// A conditional write lost (the condition did not hold).
    ConditionFailed(String),
    /// SSM will not reach the instance (stopped, unregistered, or no instance profile).
    NotManaged(String),
    /// SSM has not delivered a command to its instance yet.
    NotYetDelivered(String),
    /// Anything else AWS said.
    Other(String),
}

impl std::fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Credentials(why) => write!(
                f,
                "AWS credentials are missing or no longer valid ({why}); sign in again (e.g. `aws sso login`) or set AWS_PROFILE"
            ),
            Self::AccessDenied(why) => write!(
                f,
                "AWS denied the call ({why}); the IAM policy km needs is in docs/aws.md"
            ),
            Self::Throttled(why) => {
                write!(
                    f,
                    "AWS is throttling km ({why}); wait a minute and run the command again"
                )
            }
            Self::Unreachable(why) => write!(
                f,
                "cannot reach AWS ({why}); check the network, the region and AWS_ENDPOINT_URL"
            ),
            Self::NotFound(why)
            | Self::ConditionFailed(why)
            | Self::NotManaged(why)
            | Self::NotYetDelivered(why)
            | Self::Other(why) => f.write_str(why),
        }
    }
}

impl AwsFailure {
    /// Classifies an SDK error from any service.
    pub(crate) fn from_sdk<E, R>(error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match &error {
            SdkError::DispatchFailure(failure) => {
                let text = DisplayErrorContext(&error).to_string();
                if text.contains("credentials") {
                    Self::Credentials(short(&text))
                } else if failure.is_io() || failure.is_timeout() {
                    Self::Unreachable(short(&text))
                } else {
                    Self::Other(short(&text))
                }
            }
            SdkError::TimeoutError(_) => Self::Unreachable("the request timed out".into()),
            SdkError::ConstructionFailure(_) => {
                let text = DisplayErrorContext(&error).to_string();
                if text.contains("credentials") {
                    Self::Credentials(short(&text))
                } else {
                    Self::Other(short(&text))
                }
            }
            _ => {
                let code = error.code().unwrap_or_default().to_owned();
                let message = error.message().unwrap_or_default().to_owned();
                let said = if message.is_empty() {
                    code.clone()
                } else {
                    format!("{code}: {message}")
                };
                classify(&code, said)
            }
        }
    }
}

fn classify(code: &str, said: String) -> AwsFailure {
    match code {
        // EC2 answers an expired signature with RequestExpired; JSON services with
        // InvalidSignatureException or UnrecognizedClientException.
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "RequestExpired"
        | "InvalidSignatureException"
        | "AuthFailure"
        | "SignatureDoesNotMatch" => AwsFailure::Credentials(said),
        c if c.starts_with("AccessDenied") || c == "UnauthorizedOperation" => {
            AwsFailure::AccessDenied(said)
        }
        c if c.contains("Throttl")
            || c == "RequestLimitExceeded"
            || c == "ProvisionedThroughputExceededException" =>
        {
            AwsFailure::Throttled(said)
        }
        "ConditionalCheckFailedException" | "TransactionCanceledException" => {
            AwsFailure::ConditionFailed(said)
        }
        "InvalidInstanceId" | "TargetNotConnected" => AwsFailure::NotManaged(said),
        "InvocationDoesNotExist" => AwsFailure::NotYetDelivered(said),
        c if c.ends_with("NotFound")
            || c.ends_with("NotFoundException")
            || c == "ParameterNotFound" =>
        {
            AwsFailure::NotFound(said)
        }
        _ => AwsFailure::Other(said),
    }
}

/// The SDK's error chains are long; the last two links say what happened.
fn short(text: &str) -> String {
    let parts: Vec<&str> = text.split(": ").collect();
    let start = parts.len().saturating_sub(2);
    parts[start..].join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds_that_carry_the_next_step() {
        assert!(matches!(
            classify("AccessDeniedException", "no".into()),
            AwsFailure::AccessDenied(_)
        ));
        assert!(matches!(
            classify("ThrottlingException", "slow".into()),
            AwsFailure::Throttled(_)
        ));
        assert!(matches!(
            classify("InvalidInstanceID.NotFound", "gone".into()),
            AwsFailure::NotFound(_)
        ));
        for expired in [
            "ExpiredToken",
            "RequestExpired",
            "InvalidSignatureException",
            "UnrecognizedClientException",
        ] {
            assert!(
                matches!(classify(expired, "old".into()), AwsFailure::Credentials(_)),
                "{expired}"
            );
        }
        assert!(matches!(
            classify("InvalidInstanceId", "off".into()),
            AwsFailure::NotManaged(_)
        ));
        assert!(matches!(
            classify("InvocationDoesNotExist", "later".into()),
            AwsFailure::NotYetDelivered(_)
        ));
        let line = AwsFailure::AccessDenied("ec2:RunInstances".into()).to_string();
        assert!(line.contains("docs/aws.md") && !line.contains('\n'));
    }
}
