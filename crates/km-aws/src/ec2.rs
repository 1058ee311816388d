//! Sandboxes as EC2 instances: launched from the rendered userdata, tagged with the sandbox ID
//! and alias, stopped, started and terminated in the sandbox's own region; reached only through
//! SSM (SendCommand for scripts, a session per ssh connection).

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    IamInstanceProfileSpecification, InstanceStateName, InstanceType, ResourceType, Tag,
    TagSpecification,
};
use km_core::platform::{
    ExecOutput, HealthCheck, Liveness, Platform, PlatformError, ProvisionRequest, StreamSession,
};
use km_core::record::SandboxRecord;
use km_core::userdata::BootSteps;

use crate::boot::{BOOT_STEPS, FIRST_BOOT_DONE};

use crate::connect::{AwsSettings, block_on, runtime, sdk_config};
use crate::failure::AwsFailure;
use crate::runtime::Ec2Runtime;
use crate::ssm_command::{self, Failure, OnInterrupt, Registration, STDERR_LIMIT, STDOUT_LIMIT};
use crate::ssm_session::SessionTarget;

/// The public SSM parameter naming the newest Amazon Linux 2023 image for an architecture
/// (`x86_64` or `arm64`).
fn al2023_parameter(architecture: &str) -> String {
    format!("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{architecture}")
}
/// The architectures km has an image for, in order of preference.
const ARCHITECTURES: [&str; 2] = ["x86_64", "arm64"];
/// The SSM service setting that, when set, lets SSM manage instances without an instance
/// profile (Default Host Management Configuration).
const DHMC_SETTING: &str = "/ssm/managed-instance/default-ec2-instance-management-role";
/// EC2 refuses userdata larger than this (before base64).
pub const MAX_USERDATA_BYTES: usize = 16 * 1024;
/// How long an instance may take to reach `running` or `stopped`.
const STATE_TIMEOUT: Duration = Duration::from_secs(600);
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long an instance EC2 has just launched or started may be unknown to DescribeInstances
/// (eventual consistency: <https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>).
const NOT_FOUND_GRACE: Duration = Duration::from_secs(90);
/// The tag that names a sandbox on its instance.
pub const SANDBOX_ID_TAG: &str = "km:sandbox-id";
/// The tag that carries a sandbox's alias.
pub const ALIAS_TAG: &str = "km:alias";
/// How long an operator's `km shell <sb> -- CMD` may run on EC2.
const SHELL_COMMAND_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How long one first-boot check may take.
const BOOT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long SSM may refuse an instance (InvalidInstanceId) before km asks SSM's inventory
/// whether the instance is registered, so a caller without permission hears it in seconds
/// rather than after the whole wait; also how often it asks again.
const REFUSAL_CHECK_AFTER: Duration = Duration::from_secs(20);

/// Tells "its agent has not registered yet" from "you may not reach it" while SSM keeps
/// answering InvalidInstanceId.
struct RefusalWatch {
    next_check: Instant,
}

impl RefusalWatch {
    fn new() -> Self {
        Self {
            next_check: Instant::now() + REFUSAL_CHECK_AFTER,
        }
    }

    /// After SSM refused the instance again: an error once SSM's inventory says the instance
    /// is online, so the refusal is about the caller.
    async fn refused_again(
        &mut self,
        ssm: &aws_sdk_ssm::Client,
        target: ssm_command::Target<'_>,
    ) -> Result<(), PlatformError> {
        if Instant::now() < self.next_check {
            return Ok(());
        }
        self.next_check = Instant::now() + REFUSAL_CHECK_AFTER;
        match ssm_command::registration(ssm, target).await {
            Registration::Online => Err(target.refused(&Registration::Online)),
            Registration::NotOnline(_) | Registration::Unknown(_) => Ok(()),
        }
    }
}

/// Runs sandboxes as EC2 instances.
#[derive(Debug)]
pub struct Ec2Platform {
    settings: AwsSettings,
    runtime: tokio::runtime::Runtime,
    clients: Mutex<HashMap<String, (Client, aws_sdk_ssm::Client)>>,
}

/// Where a sandbox's instance is, as its record keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Placement {
    instance_id: String,
    region: String,
}

/// An instance profile named either way `km init --aws --instance-profile` accepts: its name,
/// or its ARN (`arn:aws:iam::<account>:instance-profile/<path/name>`), which EC2 takes only as
/// an ARN.
fn instance_profile_spec(profile: &str) -> IamInstanceProfileSpecification {
    let builder = IamInstanceProfileSpecification::builder();
    if profile.starts_with("arn:") {
        builder.arn(profile).build()
    } else {
        builder.name(profile).build()
    }
}

/// Expired or missing credentials, and an AWS that cannot be reached, stay that kind of error,
/// whatever was being done.
fn boot(failure: AwsFailure) -> PlatformError {
    match failure {
        AwsFailure::Credentials(_) => PlatformError::Credentials(failure.to_string()),
        AwsFailure::Unreachable(_) | AwsFailure::Throttled(_) => {
            PlatformError::Unreachable(failure.to_string())
        }
        other => PlatformError::Boot(other.to_string()),
    }
}

fn channel(failure: AwsFailure) -> PlatformError {
    match failure {
        AwsFailure::Credentials(_) => PlatformError::Credentials(failure.to_string()),
        AwsFailure::Unreachable(_) | AwsFailure::Throttled(_) => {
            PlatformError::Unreachable(failure.to_string())
        }
        other => PlatformError::Channel(other.to_string()),
    }
}

impl Ec2Platform {
    /// A platform that launches with `settings`.
    pub fn new(settings: AwsSettings) -> Result<Self, PlatformError> {
        Ok(Self {
            settings,
            runtime: runtime().map_err(|e| PlatformError::Boot(e.to_string()))?,
            clients: Mutex::new(HashMap::new()),
        })
    }

    fn clients(&self, region: &str) -> (Client, aws_sdk_ssm::Client) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                block_on(&self.runtime, async {
                    let config = sdk_config(region).await;
                    (Client::new(&config), aws_sdk_ssm::Client::new(&config))
                })
            })
            .clone()
    }

    fn placement(record: &SandboxRecord) -> Result<Placement, PlatformError> {
        serde_json::from_value(record.resources.placement()).map_err(|_| {
            PlatformError::Channel(format!(
                "the record of {} names no EC2 instance (its create did not finish)",
                record.id
            ))
        })
    }

    /// The instance's state, `None` when EC2 no longer knows it.
    async fn state(
        ec2: &Client,
        instance_id: &str,
    ) -> Result<Option<InstanceStateName>, AwsFailure> {
        let described = ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await;
        match described {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(instance_id))
                .and_then(|i| i.state())
                .and_then(|s| s.name())
                .cloned()),
            Err(error) => match AwsFailure::from_sdk(error) {
                AwsFailure::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn wait_for(
        ec2: &Client,
        instance_id: &str,
        wanted: InstanceStateName,
    ) -> Result<(), AwsFailure> {
        let started = Instant::now();
        let deadline = started + STATE_TIMEOUT;
        loop {
            let state = Self::state(ec2, instance_id).await?;
            if state.as_ref() == Some(&wanted) {
                return Ok(());
            }
            // EC2 is eventually consistent: right after RunInstances (or StartInstances) the
            // instance may be unknown to DescribeInstances for a while. Not found is "not yet"
            // until that grace has passed, never "gone".
            let unknown_for_good = state.is_none() && started.elapsed() > NOT_FOUND_GRACE;
            if (unknown_for_good
                || matches!(
                    state,
                    Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
                ))
                && wanted != InstanceStateName::Terminated
            {
                return Err(AwsFailure::Other(format!(
                    "instance {instance_id} is {} instead of {}",
                    state.map_or("gone".into(), |s| s.as_str().to_owned()),
                    wanted.as_str()
                )));
            }
            if Instant::now() > deadline {
                return Err(AwsFailure::Other(format!(
                    "instance {instance_id} did not become {} within {}s",
                    wanted.as_str(),
                    STATE_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The architecture km launches `instance_type` with, from what EC2 says it supports.
    async fn architecture(ec2: &Client, instance_type: &str) -> Result<String, AwsFailure> {
        let out = ec2
            .describe_instance_types()
            .instance_types(InstanceType::from(instance_type))
            .send()
            .await
            .map_err(AwsFailure::from_sdk)?;
        let supported: Vec<String> = out
            .instance_types()
            .first()
            .and_then(|t| t.processor_info())
            .map(|p| {
                p.supported_architectures()
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        ARCHITECTURES
            .iter()
            .find(|a| supported.iter().any(|s| s == *a))
            .map(|a| (*a).to_owned())
            .ok_or_else(|| {
                AwsFailure::Other(format!(
                    "instance type {instance_type} runs {supported:?}, and km has images only for x86_64 and arm64; pick another instanceType"
                ))
            })
    }

    /// The image to launch: the profile's `ami` (refused when it is built for another
    /// architecture than the instance type runs), else the newest Amazon Linux 2023 for it.
    async fn image(
        ec2: &Client,
        ssm: &aws_sdk_ssm::Client,
        requested: Option<&str>,
        architecture: &str,
        instance_type: &str,
    ) -> Result<String, AwsFailure> {
        if let Some(ami) = requested {
            let out = ec2
                .describe_images()
                .image_ids(ami)
                .send()
                .await
                .map_err(AwsFailure::from_sdk)?;
            let built_for = out
                .images()
                .first()
                .and_then(|i| i.architecture())
                .map(|a| a.as_str().to_owned());
            return match built_for {
                Some(arch) if arch != architecture => Err(AwsFailure::Other(format!(
                    "image {ami} is built for {arch}, but instance type {instance_type} runs {architecture}: name an {architecture} image in the profile's `ami`, or leave `ami` out and km picks Amazon Linux 2023 for {architecture}"
                ))),
                Some(_) => Ok(ami.to_owned()),
                None => Err(AwsFailure::NotFound(format!(
                    "image {ami} does not exist in this region"
                ))),
            };
        }
        let parameter = al2023_parameter(architecture);
        let out = ssm
            .get_parameter()
            .name(&parameter)
            .send()
            .await
            .map_err(AwsFailure::from_sdk)?;
        out.parameter()
            .and_then(|p| p.value())
            .map(str::to_owned)
            .ok_or_else(|| AwsFailure::NotFound(format!("{parameter} has no value")))
    }

    /// Refuses to launch an instance SSM could never manage: without an instance profile, only
    /// an account with Default Host Management Configuration lets the SSM agent register, and
    /// km would otherwise wait ten minutes for nothing.
    async fn check_manageable(
        &self,
        ssm: &aws_sdk_ssm::Client,
        region: &str,
    ) -> Result<(), AwsFailure> {
        if self.settings.instance_profile.is_some() {
            return Ok(());
        }
        let dhmc = ssm
            .get_service_setting()
            .setting_id(DHMC_SETTING)
            .send()
            .await
            .ok()
            .and_then(|out| out.service_setting()?.setting_value().map(str::to_owned))
            .is_some_and(|role| !role.is_empty() && role != "$None");
        if dhmc {
            return Ok(());
        }
        Err(AwsFailure::Other(format!(
            "no instance profile is set, and the account's Default Host Management Configuration is not on (or cannot be read) in {region}, so SSM could never reach the instance; nothing was launched — set one: km init --aws --region {} --instance-profile <name> (docs/aws.md shows how to make it)",
            self.settings.region
        )))
    }

    async fn launch(
        &self,
        ec2: &Client,
        ssm: &aws_sdk_ssm::Client,
        region: &str,
        wanted: &Ec2Runtime,
        request: &ProvisionRequest,
    ) -> Result<String, AwsFailure> {
        self.check_manageable(ssm, region).await?;
        let instance_type = wanted
            .instance_type
            .clone()
            .unwrap_or_else(|| self.settings.instance_type.clone());
        let architecture = Self::architecture(ec2, &instance_type).await?;
        let image = Self::image(
            ec2,
            ssm,
            wanted.ami.as_deref(),
            &architecture,
            &instance_type,
        )
        .await?;
        let mut tags = vec![
            Tag::builder()
                .key(SANDBOX_ID_TAG)
                .value(request.id.as_str())
                .build(),
            Tag::builder()
                .key("Name")
                .value(format!("km {}", request.id))
                .build(),
        ];
        if let Some(alias) = &request.alias {
            tags.push(Tag::builder().key(ALIAS_TAG).value(alias.as_str()).build());
        }
        let mut launch = ec2
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::from(instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .user_data(aws_smithy_types::base64::encode(&request.userdata))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags))
                    .build(),
            );
        // A subnet and a security group belong to the region `km init --aws` saved them for;
        // elsewhere the region's default VPC is used.
        if region == self.settings.region {
            if let Some(subnet) = &self.settings.subnet {
                launch = launch.subnet_id(subnet);
            }
            if let Some(group) = &self.settings.security_group {
                launch = launch.security_group_ids(group);
            }
        }
        if let Some(profile) = &self.settings.instance_profile {
            launch = launch.iam_instance_profile(instance_profile_spec(profile));
        }
        let out = launch.send().await.map_err(AwsFailure::from_sdk)?;
        out.instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_owned)
            .ok_or_else(|| AwsFailure::Other("RunInstances returned no instance".into()))
    }

    /// Terminates an instance whose create failed (no record will point at it) and says how
    /// that went, after why it failed.
    async fn abandon(
        ec2: &Client,
        instance_id: &str,
        region: &str,
        failure: &dyn std::fmt::Display,
    ) -> PlatformError {
        let cleanup = ec2
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await;
        let left = match cleanup {
            Ok(_) => "it was terminated".to_owned(),
            Err(e) => format!(
                "terminating it failed too ({}); terminate {instance_id} in {region} by hand",
                AwsFailure::from_sdk(e)
            ),
        };
        PlatformError::Boot(format!("{failure}; {left}"))
    }

    /// Terminates every live instance tagged as `id`'s in the default region (a create cut
    /// short between launching and recording its instance). EC2 lists a new instance only after
    /// a while: whoever undoes such a create waits for that first.
    fn terminate_tagged(&self, id: &km_core::id::SandboxId) -> Result<(), PlatformError> {
        let (ec2, _) = self.clients(&self.settings.region);
        block_on(&self.runtime, async {
            let ids = Self::tagged(&ec2, id).await?;
            if ids.is_empty() {
                return Ok(());
            }
            ec2.terminate_instances()
                .set_instance_ids(Some(ids))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| channel(AwsFailure::from_sdk(e)))
        })
    }

    /// The live instances tagged as `id`'s.
    async fn tagged(
        ec2: &Client,
        id: &km_core::id::SandboxId,
    ) -> Result<Vec<String>, PlatformError> {
        let described = ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name(format!("tag:{SANDBOX_ID_TAG}"))
                    .values(id.as_str())
                    .build(),
            )
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(
                        ["pending", "running", "stopping", "stopped"]
                            .map(String::from)
                            .to_vec(),
                    ))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| channel(AwsFailure::from_sdk(e)))?;
        Ok(described
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect())
    }

    /// Waits until SSM reaches the instance and its userdata has finished first boot.
    async fn wait_first_boot(
        ssm: &aws_sdk_ssm::Client,
        target: ssm_command::Target<'_>,
    ) -> Result<(), PlatformError> {
        let script = format!(
            "if [ -f \"${{KM_ROOT:-}}{FIRST_BOOT_DONE}\" ]; then echo ready\n\
             elif command -v cloud-init >/dev/null 2>&1 && cloud-init status 2>/dev/null | grep -q 'status: error'; then\n\
             echo failed; tail -n 5 /var/log/cloud-init-output.log\nelse echo booting; fi\n"
        );
        let deadline = Instant::now() + STATE_TIMEOUT;
        let mut refusals = RefusalWatch::new();
        loop {
            match ssm_command::run(
                ssm,
                target,
                &script,
                BOOT_CHECK_TIMEOUT,
                OnInterrupt::Ignore,
            )
            .await
            {
                Ok(done) if done.stdout.lines().next() == Some("ready") => return Ok(()),
                Ok(done) if done.stdout.lines().next() == Some("failed") => {
                    return Err(PlatformError::Boot(format!(
                        "the first boot of instance {} failed: {}",
                        target.instance_id,
                        done.stdout.lines().skip(1).collect::<Vec<_>>().join(" | ")
                    )));
                }
                // Booting, or its SSM agent has not registered yet.
                Err(Failure::NotManaged) => refusals.refused_again(ssm, target).await?,
                Ok(_) | Err(Failure::Undelivered(_)) => {}
                Err(other) => return Err(other.report(target)),
            }
            if Instant::now() > deadline {
                return Err(PlatformError::Boot(format!(
                    "instance {} did not finish its first boot where SSM can reach it within {}s: its SSM agent never came online, so it needs an instance profile that allows SSM (km init --aws --instance-profile <name>) and a subnet that reaches SSM (docs/aws.md)",
                    target.instance_id,
                    STATE_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until a no-op command runs on the instance.
    async fn wait_reachable(
        ssm: &aws_sdk_ssm::Client,
        target: ssm_command::Target<'_>,
    ) -> Result<(), PlatformError> {
        let deadline = Instant::now() + STATE_TIMEOUT;
        let mut refusals = RefusalWatch::new();
        loop {
            match ssm_command::run(ssm, target, "true", BOOT_CHECK_TIMEOUT, OnInterrupt::Ignore)
                .await
            {
                Ok(done) if done.exit_code == 0 => return Ok(()),
                Err(Failure::NotManaged) => refusals.refused_again(ssm, target).await?,
                Ok(_) | Err(Failure::Undelivered(_)) => {}
                Err(other) => return Err(other.report(target)),
            }
            if Instant::now() > deadline {
                return Err(PlatformError::Boot(format!(
                    "instance {} of sandbox {} runs, but SSM could not reach it within {}s of its start; check: aws ssm describe-instance-information --filters Key=InstanceIds,Values={} --region {}",
                    target.instance_id,
                    target.sandbox,
                    STATE_TIMEOUT.as_secs(),
                    target.instance_id,
                    target.region
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Runs `script` over SSM on the sandbox's instance.
    fn run_command(
        &self,
        record: &SandboxRecord,
        script: &str,
        timeout: Duration,
        on_interrupt: OnInterrupt,
    ) -> Result<ssm_command::Finished, PlatformError> {
        let placement = Self::placement(record)?;
        let (_, ssm) = self.clients(&placement.region);
        let target = ssm_command::Target {
            instance_id: &placement.instance_id,
            region: &placement.region,
            sandbox: &record.id,
        };
        block_on(&self.runtime, async {
            match ssm_command::run(&ssm, target, script, timeout, on_interrupt).await {
                Ok(done) => Ok(done),
                Err(Failure::NotManaged) => {
                    Err(target.refused(&ssm_command::registration(&ssm, target).await))
                }
                Err(failure) => Err(failure.report(target)),
            }
        })
    }

    fn session_target(record: &SandboxRecord) -> Result<SessionTarget, PlatformError> {
        let placement = Self::placement(record)?;
        Ok(SessionTarget {
            instance_id: placement.instance_id,
            region: placement.region,
            sandbox: record.id.clone(),
        })
    }
}

fn truncated(record: &SandboxRecord) -> PlatformError {
    PlatformError::Channel(format!(
        "SSM cut the output of a command on sandbox {} at its limit ({STDOUT_LIMIT} bytes of stdout, {STDERR_LIMIT} of stderr), so it is incomplete; for full output run it over ssh: ssh {} <command>",
        record.id,
        record.id.host_alias()
    ))
}

/// Writes `text` to one of the caller's descriptors.
#[allow(unsafe_code)]
fn write_to(fd: RawFd, text: &str) -> std::io::Result<()> {
    // SAFETY: `run_with_stdio`'s caller keeps its stdio descriptors open for the whole call;
    // the duplicate written to is owned here and closed before returning.
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
    std::fs::File::from(owned).write_all(text.as_bytes())
}

impl Platform for Ec2Platform {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn provision(&self, request: &ProvisionRequest) -> Result<serde_json::Value, PlatformError> {
        self.provision_placed(request, &|_| Ok(()))
    }

    fn provision_placed(
        &self,
        request: &ProvisionRequest,
        placed: &dyn Fn(&serde_json::Value) -> Result<(), PlatformError>,
    ) -> Result<serde_json::Value, PlatformError> {
        if request.userdata.len() > MAX_USERDATA_BYTES {
            return Err(PlatformError::Boot(format!(
                "the userdata is {} bytes, over EC2's {MAX_USERDATA_BYTES}-byte limit",
                request.userdata.len()
            )));
        }
        let wanted = Ec2Runtime::of(&request.runtime)?;
        let region = wanted
            .region
            .clone()
            .unwrap_or_else(|| self.settings.region.clone());
        let (ec2, ssm) = self.clients(&region);
        let instance_id = block_on(
            &self.runtime,
            self.launch(&ec2, &ssm, &region, &wanted, request),
        )
        .map_err(boot)?;
        let placement = serde_json::json!(Placement {
            instance_id: instance_id.clone(),
            region: region.clone(),
        });
        // Outside the runtime: recording it may block on a store's own.
        if let Err(error) = placed(&placement) {
            let failure = AwsFailure::Other(format!("the instance could not be recorded: {error}"));
            return Err(block_on(
                &self.runtime,
                Self::abandon(&ec2, &instance_id, &region, &failure),
            ));
        }
        block_on(&self.runtime, async {
            if let Err(failure) =
                Self::wait_for(&ec2, &instance_id, InstanceStateName::Running).await
            {
                return Err(Self::abandon(&ec2, &instance_id, &region, &failure).await);
            }
            let target = ssm_command::Target {
                instance_id: &instance_id,
                region: &region,
                sandbox: &request.id,
            };
            if let Err(failure) = Self::wait_first_boot(&ssm, target).await {
                return Err(Self::abandon(&ec2, &instance_id, &region, &failure).await);
            }
            Ok(placement)
        })
    }

    fn resume(&self, record: &SandboxRecord) -> Result<(), PlatformError> {
        let placement = Self::placement(record)?;
        let (ec2, _) = self.clients(&placement.region);
        block_on(&self.runtime, async {
            ec2.start_instances()
                .instance_ids(&placement.instance_id)
                .send()
                .await
                .map_err(|e| boot(AwsFailure::from_sdk(e)))?;
            Self::wait_for(&ec2, &placement.instance_id, InstanceStateName::Running)
                .await
                .map_err(boot)?;
            // Running is not reachable: SSM delivers commands (and sessions) only once the
            // agent has registered again after the start.
            let (_, ssm) = self.clients(&placement.region);
            let target = ssm_command::Target {
                instance_id: &placement.instance_id,
                region: &placement.region,
                sandbox: &record.id,
            };
            Self::wait_reachable(&ssm, target).await
        })
    }

    fn stop(&self, record: &SandboxRecord) -> Result<(), PlatformError> {
        let placement = Self::placement(record)?;
        let (ec2, _) = self.clients(&placement.region);
        block_on(&self.runtime, async {
            ec2.stop_instances()
                .instance_ids(&placement.instance_id)
                .send()
                .await
                .map_err(|e| channel(AwsFailure::from_sdk(e)))?;
            Self::wait_for(&ec2, &placement.instance_id, InstanceStateName::Stopped)
                .await
                .map_err(channel)
        })
    }

    fn destroy(&self, record: &SandboxRecord) -> Result<(), PlatformError> {
        // A create cut short before it recorded its instance (a manager that crashed) may still
        // have launched one: it carries the sandbox's tag, in the default region.
        let Ok(placement) = Self::placement(record) else {
            return self.terminate_tagged(&record.id);
        };
        let (ec2, _) = self.clients(&placement.region);
        block_on(&self.runtime, async {
            match ec2
                .terminate_instances()
                .instance_ids(&placement.instance_id)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                // Already gone behind km's back: destroy still cleans up the rest.
                Err(error) => match AwsFailure::from_sdk(error) {
                    AwsFailure::NotFound(_) => Ok(()),
                    other => Err(channel(other)),
                },
            }
        })
    }

    fn doctor(&self) -> Vec<HealthCheck> {
        vec![HealthCheck {
            name: "ssm sessions",
            outcome: crate::ssm_session::tools_found(),
        }]
    }

    fn logs_hint(&self, record: &SandboxRecord) -> String {
        match Self::placement(record) {
            Ok(placement) => format!(
                "its boot output is on the instance's console: aws ec2 get-console-output --region {} --instance-id {} --latest --output text",
                placement.region, placement.instance_id
            ),
            Err(_) => format!(
                "the record of {} names no instance; see what the team table holds with: km list --json",
                record.id
            ),
        }
    }

    fn states(&self, records: &[&SandboxRecord]) -> Result<Vec<Liveness>, PlatformError> {
        // One DescribeInstances per region (in pages of 100 IDs), filtered rather than named, so
        // an instance EC2 has forgotten is reported gone instead of failing the whole call.
        let placements: Vec<Option<Placement>> =
            records.iter().map(|r| Self::placement(r).ok()).collect();
        let mut regions: HashMap<&str, Vec<&str>> = HashMap::new();
        for placement in placements.iter().flatten() {
            regions
                .entry(placement.region.as_str())
                .or_default()
                .push(placement.instance_id.as_str());
        }
        let mut states: HashMap<String, InstanceStateName> = HashMap::new();
        for (region, ids) in regions {
            let (ec2, _) = self.clients(region);
            for page in ids.chunks(100) {
                let described = block_on(&self.runtime, async {
                    ec2.describe_instances()
                        .filters(
                            aws_sdk_ec2::types::Filter::builder()
                                .name("instance-id")
                                .set_values(Some(page.iter().map(|id| (*id).to_owned()).collect()))
                                .build(),
                        )
                        .send()
                        .await
                })
                .map_err(|error| match AwsFailure::from_sdk(error) {
                    failure @ AwsFailure::Credentials(_) => {
                        PlatformError::Credentials(failure.to_string())
                    }
                    failure @ (AwsFailure::Unreachable(_) | AwsFailure::Throttled(_)) => {
                        PlatformError::Unreachable(format!(
                            "cannot ask EC2 in {region} whether the sandboxes' instances run: {failure}"
                        ))
                    }
                    other => PlatformError::Channel(format!(
                        "cannot ask EC2 in {region} whether the sandboxes' instances run: {other}"
                    )),
                })?;
                states.extend(
                    described
                        .reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .filter_map(|i| {
                            Some((i.instance_id()?.to_owned(), i.state()?.name()?.clone()))
                        }),
                );
            }
        }
        Ok(placements
            .iter()
            .map(
                |placement| match placement.as_ref().and_then(|p| states.get(&p.instance_id)) {
                    Some(InstanceStateName::Running) => Liveness::Running,
                    None | Some(InstanceStateName::Terminated) => Liveness::Gone,
                    Some(_) => Liveness::Stopped,
                },
            )
            .collect())
    }

    fn exec(
        &self,
        record: &SandboxRecord,
        script: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, PlatformError> {
        let done = self.run_command(
            record,
            &ssm_command::as_sandbox_user(script),
            timeout,
            OnInterrupt::Ignore,
        )?;
        if done.truncated {
            return Err(truncated(record));
        }
        Ok(ExecOutput {
            exit_code: done.exit_code,
            stdout: done.stdout,
            stderr: done.stderr,
            timed_out: done.timed_out,
        })
    }

    fn run_with_stdio(
        &self,
        record: &SandboxRecord,
        script: &str,
        stdio: [RawFd; 3],
    ) -> Result<i32, PlatformError> {
        // SendCommand carries no input: the command's stdin is empty, as with `ssh -n`.
        let done = self.run_command(
            record,
            &ssm_command::as_sandbox_user(script),
            SHELL_COMMAND_TIMEOUT,
            OnInterrupt::Cancel,
        )?;
        let written =
            write_to(stdio[1], &done.stdout).and_then(|()| write_to(stdio[2], &done.stderr));
        if let Err(e) = written
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(PlatformError::Channel(format!(
                "cannot write the command's output: {e}"
            )));
        }
        if done.truncated {
            return Err(truncated(record));
        }
        if done.timed_out {
            return Err(PlatformError::Channel(format!(
                "the command on sandbox {} ran past {}h and was stopped",
                record.id,
                SHELL_COMMAND_TIMEOUT.as_secs() / 3600
            )));
        }
        Ok(done.exit_code)
    }

    fn open_stream(
        &self,
        record: &SandboxRecord,
        fds: &[RawFd],
    ) -> Result<Box<dyn StreamSession>, PlatformError> {
        Self::session_target(record)?.open(fds)
    }

    fn sshd_check(&self) -> String {
        "systemctl is-active --quiet sshd".into()
    }

    fn sessions_root(&self, _record: &SandboxRecord) -> String {
        // One instance is one sandbox: every session on it is the sandbox's.
        "1".into()
    }

    fn host_key_path(&self, _record: &SandboxRecord) -> String {
        "\"${KM_ROOT:-}\"/etc/ssh/ssh_host_ed25519_key.pub".into()
    }

    fn workspace_path(&self, _record: &SandboxRecord) -> String {
        "/home/sandbox/workspace".into()
    }

    fn login_user(&self, _record: &SandboxRecord) -> String {
        "sandbox".into()
    }

    fn streams_outlive_the_caller(&self) -> bool {
        // An SSM session lives as long as the process that opened it.
        false
    }

    fn boot_steps(&self) -> BootSteps {
        BOOT_STEPS
    }

    fn shell_session(
        &self,
        record: &SandboxRecord,
    ) -> Result<Option<std::process::Command>, PlatformError> {
        Self::session_target(record)?.shell().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_profile_is_passed_by_arn_or_by_name_as_given() {
        let arn = "arn:aws:iam::123456789012:instance-profile/team/km-sandbox";
        let by_arn = instance_profile_spec(arn);
        assert_eq!((by_arn.arn(), by_arn.name()), (Some(arn), None));
        let by_name = instance_profile_spec("km-sandbox");
        assert_eq!((by_name.arn(), by_name.name()), (None, Some("km-sandbox")));
    }
}
