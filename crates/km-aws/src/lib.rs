//! km's AWS platform: sandboxes as EC2 instances, records in a DynamoDB table the team shares.
//!
//! Every call goes to the region it concerns: the table's region for records, each sandbox's
//! own region (from its record) for its instance. The SDK is async; km's commands are not, so
//! each client here owns a small runtime and blocks on it. Endpoints, credentials and regions
//! come from the standard AWS environment (`AWS_ENDPOINT_URL`, profiles, SSO), so the same
//! code runs against AWS and against a local emulator.

mod boot;
mod connect;
mod ec2;
mod failure;
mod manager;
mod requests;
mod runtime;
mod saved_settings;
mod ssm_command;
mod ssm_session;
mod store;

pub use connect::AwsSettings;
pub use ec2::{ALIAS_TAG, Ec2Platform, MAX_USERDATA_BYTES, SANDBOX_ID_TAG};
pub use failure::AwsFailure;
pub use manager::{
    DeployedManager, ManagerTarget, deploy as deploy_manager, deployed as deployed_manager,
    invoke_event,
};
pub use requests::{Claim, RequestItem, RequestState, RequestTable, now_seconds};
pub use runtime::Ec2Runtime;
pub use saved_settings::SavedSettings;
pub use ssm_command::{STDERR_LIMIT, STDOUT_LIMIT};
pub use store::{DynamoStore, TableSetup, ensure_table};
