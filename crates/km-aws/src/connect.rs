//! Settings and SDK clients, per region, with a runtime to block on.

use std::future::Future;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

/// Where the AWS platform keeps records and how it launches sandboxes, as `km init --aws`
/// recorded it (and as the management component is deployed with).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AwsSettings {
    /// The region of the record table, and of sandboxes whose profile names none.
    pub region: String,
    /// The DynamoDB table of sandbox records.
    pub table: String,
    /// EC2 instance type for sandboxes whose profile names none.
    pub instance_type: String,
    /// Subnet to launch in; the default VPC's when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Security group; the VPC's default when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group: Option<String>,
    /// IAM instance profile that lets the SSM agent register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
}

/// A current-thread runtime: the SDK's futures run on the calling thread, one at a time.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs `future` to completion from synchronous code, even when called from inside another
/// runtime's blocking section.
pub(crate) fn block_on<F: Future>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output {
    runtime.block_on(future)
}

/// The shared SDK configuration for `region`: the standard credential chain and endpoint
/// settings, short timeouts so an unreachable endpoint fails in seconds, not minutes.
pub(crate) async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}
