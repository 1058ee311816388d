//! The EC2 provider's own `spec.runtime` fields: `region`, `instanceType` and `ami`.

use km_core::profile::{FieldError, Runtime};
use serde::{Deserialize, Serialize};

/// What an EC2 profile may say under `spec.runtime` besides `substrate`; each unset field
/// falls back to what `km init --aws` saved (the AMI: the latest Amazon Linux 2023 image).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ec2Runtime {
    /// AWS region of the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// EC2 instance type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// AMI ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami: Option<String>,
}

impl Ec2Runtime {
    /// The fields an EC2 profile's `spec.runtime` takes.
    pub const KEYS: &[&str] = &["region", "instanceType", "ami"];

    /// Reads them from a profile's runtime, each error at its place.
    pub fn of(runtime: &Runtime) -> Result<Self, Vec<FieldError>> {
        runtime.section(Self::KEYS)
    }
}
