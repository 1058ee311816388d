//! The AWS platform's management component, as far as this km deploys it: the manager's
//! artifact in S3, the Lambda function's code taken from it, and the function's environment as
//! the manager's manifest; and reading all of that back to check a deployment.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_lambda::types::{Environment, LastUpdateStatus};

use crate::connect::{block_on, runtime, sdk_config};
use crate::failure::AwsFailure;

/// How long Lambda may take to apply a code or configuration update.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(300);
const UPDATE_POLL: Duration = Duration::from_millis(500);

/// Where the manager lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerTarget {
    /// The function's (and the bucket's) region.
    pub region: String,
    /// The S3 bucket that keeps every artifact deployed.
    pub bucket: String,
    /// The Lambda function that runs the manager.
    pub function: String,
}

/// What the deployed function says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedManager {
    /// Its environment: the manifest (`KM_VERSION`, `KM_BUILD_ID`, `KM_REQUEST_FIELDS`).
    pub environment: BTreeMap<String, String>,
    /// Base64 of the sha256 of its code package, as Lambda reports it.
    pub code_sha256: String,
    /// How long one invocation may run.
    pub timeout_seconds: u64,
    /// The instruction sets it runs on (`x86_64`, `arm64`).
    pub architectures: Vec<String>,
}

/// Uploads `artifact` to `s3://bucket/key`, points the function's code at it, sets its
/// environment, waits for Lambda to apply both, and returns what the function then reports.
pub fn deploy(
    target: &ManagerTarget,
    key: &str,
    artifact: Vec<u8>,
    environment: BTreeMap<String, String>,
) -> Result<DeployedManager, AwsFailure> {
    let runtime = runtime().map_err(|e| AwsFailure::Other(e.to_string()))?;
    block_on(&runtime, async {
        let config = sdk_config(&target.region).await;
        // An emulator (AWS_ENDPOINT_URL) serves buckets by path, not by host name.
        let by_path = std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(by_path)
                .build(),
        );
        let lambda = aws_sdk_lambda::Client::new(&config);
        s3.put_object()
            .bucket(&target.bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(artifact))
            .send()
            .await
            .map_err(AwsFailure::from_sdk)?;
        lambda
            .update_function_code()
            .function_name(&target.function)
            .s3_bucket(&target.bucket)
            .s3_key(key)
            .send()
            .await
            .map_err(AwsFailure::from_sdk)?;
        settled(&lambda, &target.function).await?;
        lambda
            .update_function_configuration()
            .function_name(&target.function)
            .environment(
                Environment::builder()
                    .set_variables(Some(environment.into_iter().collect()))
                    .build(),
            )
            .send()
            .await
            .map_err(AwsFailure::from_sdk)?;
        settled(&lambda, &target.function).await?;
        // Published only now, so the version carries the code and the manifest that describes it.
        lambda
            .publish_version()
            .function_name(&target.function)
            .send()
            .await
            .map_err(AwsFailure::from_sdk)?;
        settled(&lambda, &target.function).await?;
        describe(&lambda, &target.function)
            .await?
            .ok_or_else(|| AwsFailure::NotFound(format!("function {} vanished", target.function)))
    })
}

/// What the function reports now; `None` when it does not exist.
pub fn deployed(target: &ManagerTarget) -> Result<Option<DeployedManager>, AwsFailure> {
    let runtime = runtime().map_err(|e| AwsFailure::Other(e.to_string()))?;
    block_on(&runtime, async {
        let lambda = aws_sdk_lambda::Client::new(&sdk_config(&target.region).await);
        describe(&lambda, &target.function).await
    })
}

async fn describe(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> Result<Option<DeployedManager>, AwsFailure> {
    let described = lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await;
    let configuration = match described {
        Ok(configuration) => configuration,
        Err(error) => {
            return match AwsFailure::from_sdk(error) {
                AwsFailure::NotFound(_) => Ok(None),
                other => Err(other),
            };
        }
    };
    let environment = configuration
        .environment()
        .and_then(|e| e.variables())
        .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(Some(DeployedManager {
        environment,
        code_sha256: configuration.code_sha256().unwrap_or_default().to_owned(),
        // Lambda's own default when none is set.
        timeout_seconds: configuration
            .timeout()
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(3),
        architectures: configuration
            .architectures()
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
    }))
}

/// Hands `payload` to the function as an asynchronous (`Event`) invocation: Lambda queues it,
/// answers at once, and retries it twice if the function fails.
pub fn invoke_event(target: &ManagerTarget, payload: Vec<u8>) -> Result<(), AwsFailure> {
    let runtime = runtime().map_err(|e| AwsFailure::Other(e.to_string()))?;
    block_on(&runtime, async {
        let lambda = aws_sdk_lambda::Client::new(&sdk_config(&target.region).await);
        lambda
            .invoke()
            .function_name(&target.function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(AwsFailure::from_sdk)
    })
}

/// Waits until the function's last update has been applied.
async fn settled(lambda: &aws_sdk_lambda::Client, function: &str) -> Result<(), AwsFailure> {
    let deadline = Instant::now() + UPDATE_TIMEOUT;
    loop {
        let configuration = lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
            .map_err(AwsFailure::from_sdk)?;
        match configuration.last_update_status() {
            Some(LastUpdateStatus::InProgress) => {}
            Some(LastUpdateStatus::Failed) => {
                return Err(AwsFailure::Other(format!(
                    "Lambda could not apply the update to {function}: {}",
                    configuration
                        .last_update_status_reason()
                        .unwrap_or("no reason given")
                )));
            }
            _ => return Ok(()),
        }
        if Instant::now() > deadline {
            return Err(AwsFailure::Other(format!(
                "Lambda did not apply the update to {function} within {}s",
                UPDATE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(UPDATE_POLL).await;
    }
}
