//! What `km init --aws` saves for this machine: the platform's settings and, with
//! `--sidecars`, where its management component lives.

use serde::{Deserialize, Serialize};

use crate::connect::AwsSettings;
use crate::manager::ManagerTarget;

/// The `aws` section of km's settings file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSettings {
    /// Records, regions and launch settings.
    #[serde(flatten)]
    pub platform: AwsSettings,
    /// The S3 bucket of the management component's artifacts (`km init --aws --sidecars`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_bucket: Option<String>,
    /// The Lambda function that runs the management component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_function: Option<String>,
}

impl SavedSettings {
    /// The management component's function and bucket, when one is set up.
    pub fn manager_target(&self) -> Option<ManagerTarget> {
        Some(ManagerTarget {
            region: self.platform.region.clone(),
            bucket: self.manager_bucket.clone()?,
            function: self.manager_function.clone()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::SavedSettings;

    #[test]
    fn reads_and_writes_the_section_every_km_init_aws_has_saved() {
        for saved in [
            json!({ "region": "eu-west-1", "table": "km-sandboxes", "instance_type": "t3.medium" }),
            json!({
                "region": "eu-west-1", "table": "t", "instance_type": "t3.small",
                "subnet": "subnet-1", "security_group": "sg-1", "instance_profile": "km-ssm",
                "manager_bucket": "b", "manager_function": "km-manager"
            }),
        ] {
            let settings: SavedSettings = serde_json::from_value(saved.clone()).unwrap();
            assert_eq!(serde_json::to_value(&settings).unwrap(), saved);
        }
    }

    #[test]
    fn a_manager_needs_both_its_bucket_and_its_function() {
        let mut settings: SavedSettings = serde_json::from_value(
            json!({ "region": "r", "table": "t", "instance_type": "i", "manager_bucket": "b" }),
        )
        .unwrap();
        assert_eq!(settings.manager_target(), None);
        settings.manager_function = Some("f".into());
        let target = settings.manager_target().unwrap();
        assert_eq!(
            (
                target.region.as_str(),
                target.bucket.as_str(),
                target.function.as_str()
            ),
            ("r", "b", "f")
        );
    }
}
