//! The `km init` options each provider adds: `--aws` and what the AWS platform is set up
//! with. They exist in every build, so a build without a provider can say why it refuses.

use clap::Args;

/// Every provider's `km init` options, flattened into `km init`.
#[derive(Debug, Args)]
pub(crate) struct InitOptions {
    #[command(flatten)]
    pub(crate) aws: AwsInitOptions,
}

/// `km init --aws …`.
#[derive(Debug, Args)]
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub(crate) struct AwsInitOptions {
    /// Point km at AWS instead of the local platform
    #[arg(long, requires = "region")]
    pub(crate) aws: bool,
    /// AWS region of the record table (and the default for sandboxes), with --aws
    #[arg(long, requires = "aws")]
    pub(crate) region: Option<String>,
    /// DynamoDB table of sandbox records, shared by everyone who uses it
    #[arg(long, requires = "aws", default_value = "km-sandboxes")]
    pub(crate) table: String,
    /// EC2 instance type for sandboxes whose profile names none
    #[arg(long, requires = "aws", default_value = "t3.medium")]
    pub(crate) instance_type: String,
    /// Subnet to launch sandboxes in (default: the default VPC's)
    #[arg(long, requires = "aws")]
    pub(crate) subnet: Option<String>,
    /// Security group for sandboxes (default: the VPC's default group)
    #[arg(long, requires = "aws")]
    pub(crate) security_group: Option<String>,
    /// IAM instance profile that lets the SSM agent on a sandbox register
    #[arg(long, requires = "aws")]
    pub(crate) instance_profile: Option<String>,
    /// With --aws --sidecars: the S3 bucket that keeps the management component's artifacts
    #[arg(long, requires = "sidecars")]
    pub(crate) artifact_bucket: Option<String>,
    /// With --aws --sidecars: the Lambda function that runs the management component
    #[arg(long, requires = "sidecars", default_value = "km-manager")]
    pub(crate) manager_function: String,
    /// With --aws --sidecars: the km binary to deploy (default: this km, when Lambda's
    /// provided.al2023 can run it: a Linux ELF of the function's architecture needing glibc
    /// 2.34 at most)
    #[arg(long, requires = "sidecars", value_name = "PATH")]
    pub(crate) manager_binary: Option<std::path::PathBuf>,
}
