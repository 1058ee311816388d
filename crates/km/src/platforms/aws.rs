//! The AWS provider (`km-aws`): records in a DynamoDB table the team shares, sandboxes on
//! EC2 reached through SSM, its `aws` section of the settings file, `km init --aws` and the
//! management component on Lambda.

use std::process::ExitCode;
use std::sync::Arc;

use km_aws::{DynamoStore, Ec2Platform, SavedSettings, TableSetup};
use km_core::id::Operator;
use km_core::platform::Platform;
use km_core::record::SandboxStore;

use super::AWS;
use super::init_options::AwsInitOptions;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::manager_protocol::Manifest;
use crate::settings::Settings;
use crate::ui;

/// The `aws` section of `settings`, if `km init --aws` wrote one.
pub(crate) fn section(
    context: &Context,
    settings: &Settings,
) -> CommandResult<Option<SavedSettings>> {
    settings.section(context, AWS)
}

fn saved(context: &Context) -> CommandResult<SavedSettings> {
    section(context, &Settings::load(context)?)?.ok_or_else(|| {
        CommandError::user("the AWS platform is not set up on this machine")
            .hint("run `km init --aws --region <region>`")
    })
}

pub(super) fn open_store(
    context: &Context,
    settings: &Settings,
) -> CommandResult<Box<dyn SandboxStore>> {
    let aws = section(context, settings)?.ok_or_else(|| {
        CommandError::user("km's settings choose AWS but hold no AWS settings")
            .hint("run `km init --aws --region <region>` again")
    })?;
    Ok(Box::new(DynamoStore::open(&aws.platform)?))
}

pub(super) fn platform(context: &Context) -> CommandResult<Arc<dyn Platform>> {
    Ok(Arc::new(Ec2Platform::new(saved(context)?.platform)?))
}

pub(super) fn init(
    context: &Context,
    args: &AwsInitOptions,
    operator: Option<&Operator>,
    sidecars: bool,
) -> CommandResult<ExitCode> {
    let region = args.region.clone().ok_or_else(|| {
        CommandError::user("km init --aws needs --region").hint("km init --aws --region us-east-1")
    })?;
    if sidecars && args.artifact_bucket.is_none() {
        return Err(
            CommandError::user("km init --aws --sidecars needs --artifact-bucket")
                .hint("km init --aws --region <region> --sidecars --artifact-bucket <bucket>"),
        );
    }
    let previous = Settings::load(context)
        .ok()
        .and_then(|s| section(context, &s).ok().flatten());
    let wanted = SavedSettings {
        platform: km_aws::AwsSettings {
            region,
            table: args.table.clone(),
            instance_type: args.instance_type.clone(),
            subnet: args.subnet.clone(),
            security_group: args.security_group.clone(),
            instance_profile: args.instance_profile.clone(),
        },
        // Set by --sidecars; kept as they were otherwise.
        manager_bucket: args
            .artifact_bucket
            .clone()
            .or_else(|| previous.as_ref().and_then(|p| p.manager_bucket.clone())),
        manager_function: if sidecars {
            Some(args.manager_function.clone())
        } else {
            previous.and_then(|p| p.manager_function)
        },
    };
    // The table first: a failure leaves this machine's settings as they were.
    let setup = km_aws::ensure_table(&wanted.platform).map_err(|failure| {
        CommandError::user(format!(
            "cannot set up the record table {} in {}",
            wanted.platform.table, wanted.platform.region
        ))
        .cause(failure)
    })?;
    for dir in [context.paths.km_dir(), context.paths.keys_dir()] {
        km_core::atomic_file::ensure_private_dir(&dir, 0o700).map_err(crate::error::io_at(&dir))?;
    }
    let mut settings = Settings::load(context).unwrap_or_default();
    let renamed = crate::ops::operator_state::name_operator(context, &mut settings, operator);
    let unchanged = settings.platform == AWS
        && section(context, &settings).ok().flatten().as_ref() == Some(&wanted)
        && setup == TableSetup::AlreadyThere
        && !renamed;
    settings.platform = AWS.to_owned();
    settings.set_section(AWS, &wanted)?;
    settings.save(context)?;
    match setup {
        TableSetup::Created => ui::status(&format!(
            "✓ Created the record table {} in {}",
            wanted.platform.table, wanted.platform.region
        )),
        TableSetup::AlreadyThere => ui::status(&format!(
            "✓ Record table {} in {} is already there",
            wanted.platform.table, wanted.platform.region
        )),
    }
    if unchanged {
        ui::status("✓ Nothing to change: this machine was already set up exactly so");
    } else {
        ui::status("✓ This machine now uses the AWS platform (settings in ~/.km/config.json)");
    }
    if wanted.platform.instance_profile.is_none() {
        ui::warn(&format!(
            "no --instance-profile: SSM can reach sandboxes only if this account has Default Host Management Configuration; without it km create refuses to launch. Set one: km init --aws --region {} --instance-profile <name> (docs/aws.md shows how to make it)",
            wanted.platform.region
        ));
    }
    if sidecars {
        deploy_manager(context, &wanted, args.manager_binary.as_deref())?;
    } else {
        report_manager(context);
    }
    ui::status("next: km create profiles/ec2.yaml --alias my-poc");
    Ok(ExitCode::SUCCESS)
}

/// The Lambda package: this km as `bootstrap`, built byte for byte the same every time, so
/// the same km always yields the same code hash.
fn package(exe: &std::path::Path) -> CommandResult<Vec<u8>> {
    use std::io::Write;
    let binary = std::fs::read(exe).map_err(crate::error::io_at(exe))?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o755)
        .large_file(binary.len() > u32::MAX as usize / 2);
    let packed = zip
        .start_file("bootstrap", options)
        .map_err(std::io::Error::other)
        .and_then(|()| zip.write_all(&binary))
        .and_then(|()| zip.finish().map_err(std::io::Error::other));
    packed
        .map(std::io::Cursor::into_inner)
        .map_err(|e| CommandError::user("cannot package km for Lambda").cause(e))
}

/// Lambda's `CodeSha256` of a package: base64 of its sha256.
fn code_sha256(package: &[u8]) -> String {
    use sha2::Digest;
    aws_smithy_types::base64::encode(sha2::Sha256::digest(package))
}

fn manager_failure(target: &km_aws::ManagerTarget, failure: km_aws::AwsFailure) -> CommandError {
    CommandError::user(format!(
        "cannot deploy the management component to Lambda function {} in {}",
        target.function, target.region
    ))
    .cause(failure)
    .hint("create the function and the bucket once, as docs/aws-management.md describes, then run km init --aws … --sidecars again")
}

/// `km init --aws --sidecars`: uploads this km, points the function at it, sets its
/// manifest, and checks what the function then reports.
fn deploy_manager(
    context: &Context,
    settings: &SavedSettings,
    binary: Option<&std::path::Path>,
) -> CommandResult<()> {
    let target = settings
        .manager_target()
        .ok_or_else(|| CommandError::user("km init --aws --sidecars needs --artifact-bucket"))?;
    let exe = binary.unwrap_or(&context.km_exe);
    let now = km_aws::deployed_manager(&target).map_err(|f| manager_failure(&target, f))?;
    let Some(now) = now else {
        return Err(CommandError::user(format!(
            "Lambda function {} does not exist in {}",
            target.function, target.region
        ))
        .hint("create it once as docs/aws-management.md describes (runtime provided.al2023, handler bootstrap), then run this again"));
    };
    let bytes = std::fs::read(exe).map_err(crate::error::io_at(exe))?;
    if let Some(why) = crate::lambda_package::refusal(&bytes, &now.architectures) {
        return Err(CommandError::user(format!(
            "{} cannot run as Lambda function {}: {why}; nothing was deployed",
            exe.display(),
            target.function
        ))
        .hint("build km for provided.al2023 and deploy that: cargo zigbuild --release --features aws --target x86_64-unknown-linux-gnu.2.34, then km init --aws … --sidecars --manager-binary target/x86_64-unknown-linux-gnu/release/km"));
    }
    let manifest = match binary {
        None => Manifest::of_this_build(exe)?,
        Some(binary) => manifest_of(binary)?,
    };
    let mut environment = manifest.to_environment();
    // The manager launches sandboxes as this machine would, into the same table.
    environment.insert(
        crate::manager_protocol::PLATFORM_VAR.to_owned(),
        serde_json::to_string(&settings.platform)
            .map_err(|e| CommandError::internal(format!("cannot encode the AWS settings: {e}")))?,
    );
    let package = package(exe)?;
    let code = code_sha256(&package);
    match now {
        now if now.environment == environment && now.code_sha256 == code => {
            ui::status(&format!(
                "✓ Management component is already {} on Lambda function {}",
                manifest.short(),
                target.function
            ));
            return Ok(());
        }
        _ => {}
    }
    let key = format!("km-manager/{}/{}.zip", manifest.version, manifest.hex());
    let got = km_aws::deploy_manager(&target, &key, package, environment.clone())
        .map_err(|f| manager_failure(&target, f))?;
    if got.environment != environment || got.code_sha256 != code {
        return Err(CommandError::user(format!(
            "Lambda function {} does not report what was deployed to it",
            target.function
        ))
        .cause(format!(
            "expected code {code}, got {}; environment {:?}",
            got.code_sha256, got.environment
        ))
        .hint("run km init --aws … --sidecars again; if it persists, check who else updates the function"));
    }
    ui::status(&format!(
        "✓ Management component {} deployed: s3://{}/{key} → Lambda function {} (knows {})",
        manifest.short(),
        target.bucket,
        target.function,
        manifest.request_fields.join(", ")
    ));
    Ok(())
}

/// What another km binary says it understands (`<binary> __manager manifest`).
fn manifest_of(binary: &std::path::Path) -> CommandResult<Manifest> {
    let output = std::process::Command::new(binary)
        .args(["__manager", "manifest"])
        .output()
        .map_err(|e| {
            CommandError::user(format!(
                "cannot run {} to read its manifest",
                binary.display()
            ))
            .cause(e)
            .hint("--manager-binary takes a km built for this machine's architecture")
        })?;
    if !output.status.success() {
        return Err(CommandError::user(format!(
            "{} did not print a km manifest",
            binary.display()
        ))
        .cause(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        CommandError::user(format!("{} printed no km manifest", binary.display())).cause(e)
    })
}

/// `km init --aws` without `--sidecars`: warns when the deployed manager is not this km.
fn report_manager(context: &Context) {
    let Ok(Some(deployed)) = manager_manifest(context) else {
        return;
    };
    if let Ok(this) = Manifest::of_this_build(&context.km_exe) {
        crate::manager_protocol::report_difference(
            &deployed,
            &this,
            "km init --aws --region <region> --sidecars --artifact-bucket <bucket>",
        );
    }
}

pub(super) fn manager_manifest(context: &Context) -> CommandResult<Option<Manifest>> {
    Ok(deployed_manager(context)?.map(|(manifest, _)| manifest))
}

pub(super) fn pending_creates(context: &Context) -> Result<Vec<km_core::id::SandboxId>, String> {
    let settings = saved(context).map_err(|e| e.one_line())?;
    if settings.manager_target().is_none() {
        return Ok(Vec::new());
    }
    let requests = km_aws::RequestTable::open(&settings.platform).map_err(|f| f.to_string())?;
    Ok(requests
        .unfinished()
        .map_err(|f| f.to_string())?
        .into_iter()
        .filter(|item| item.kind == "create")
        .filter_map(|item| item.sandbox_id.parse().ok())
        .collect())
}

pub(super) fn pending_create_requests(context: &Context) -> Vec<super::PendingCreate> {
    let Ok(settings) = saved(context) else {
        return Vec::new();
    };
    if settings.manager_target().is_none() {
        return Vec::new();
    }
    let unfinished =
        km_aws::RequestTable::open(&settings.platform).and_then(|requests| requests.unfinished());
    unfinished
        .unwrap_or_default()
        .into_iter()
        .filter(|item| item.kind == "create")
        .map(|item| super::PendingCreate {
            platform: AWS,
            sandbox: item.sandbox_id,
            state: match item.state {
                km_aws::RequestState::Queued => "queued",
                _ => "starting",
            },
            requested_by: item.requested_by,
            queued_at: item.queued_at,
        })
        .collect()
}

/// The table that holds the manager's request items, when a manager is set up.
pub(super) fn manager_table(context: &Context) -> Result<Option<km_aws::AwsSettings>, String> {
    let settings = saved(context).map_err(|e| e.one_line())?;
    Ok(settings.manager_target().map(|_| settings.platform))
}

/// Where requests go: the function, its configuration, and the table of request items.
pub(super) fn hand_off_target(context: &Context) -> CommandResult<super::HandOffTarget> {
    let settings = saved(context)?;
    let (_, deployed) = deployed_manager(context)?.ok_or_else(|| {
        CommandError::user("no management component is deployed on the AWS platform")
            .hint("km init --aws --region <region> --sidecars --artifact-bucket <bucket>")
    })?;
    let target = settings.manager_target().ok_or_else(|| {
        CommandError::user("no management component is deployed on the AWS platform")
    })?;
    Ok((target, deployed, settings.platform))
}

/// The deployed manager's manifest and configuration, checked as `manager_manifest` says.
fn deployed_manager(
    context: &Context,
) -> CommandResult<Option<(Manifest, km_aws::DeployedManager)>> {
    let settings = saved(context)?;
    let Some(target) = settings.manager_target() else {
        return Ok(None);
    };
    let Some(deployed) =
        km_aws::deployed_manager(&target).map_err(|f| manager_failure(&target, f))?
    else {
        return Ok(None);
    };
    let Some(manifest) = Manifest::from_environment(&deployed.environment) else {
        return Err(CommandError::user(format!(
            "Lambda function {} carries no km manifest in its environment",
            target.function
        ))
        .hint("km init --aws … --sidecars --artifact-bucket <bucket>"));
    };
    // The code of this very build is known here, so it is checked; another build's is not.
    let this = Manifest::of_this_build(&context.km_exe)?;
    if manifest.build_id == this.build_id
        && deployed.code_sha256 != code_sha256(&package(&context.km_exe)?)
    {
        return Err(CommandError::user(format!(
            "Lambda function {} runs code other than the build its manifest names",
            target.function
        ))
        .hint("km init --aws … --sidecars --artifact-bucket <bucket>"));
    }
    Ok(Some((manifest, deployed)))
}
