//! Which store and platform serve a command: the store from what `km init` chose for this
//! machine, each sandbox's platform from its own record (a new one's from its profile). This
//! is the one place that knows the concrete platforms; commands see only the traits.

use std::sync::Arc;

use km_core::platform::Platform;
use km_core::profile::Substrate;
use km_core::record::{SandboxRecord, SandboxStore};
use km_local::platform::LocalPlatform;
use km_local::sshd::find_tools;
use km_local::store::SqliteStore;

use crate::context::{Context, current_user, install_hint, store_error};
use crate::error::{CommandError, CommandResult};
use crate::manager_protocol::Manifest;
use crate::routed_store::RoutedStore;
use crate::settings::{PlatformChoice, Settings};

/// The name the local platform records.
pub(crate) const LOCAL: &str = "local";
/// The name the AWS platform records.
pub(crate) const AWS: &str = "aws";

/// The store `km init` chose for this machine.
pub(crate) fn open_store(context: &Context) -> CommandResult<Box<dyn SandboxStore>> {
    let settings = Settings::load(context)?;
    match settings.platform {
        PlatformChoice::Local => {
            let file = context.paths.store_file();
            if !file.exists() {
                return Err(not_initialised(&file));
            }
            let store = SqliteStore::open(&file).map_err(|e| store_error(&file, e))?;
            Ok(Box::new(store))
        }
        PlatformChoice::Aws => {
            // Local sandboxes keep their records on this machine even when the team's table
            // serves the rest.
            let paths = context.paths.clone();
            Ok(Box::new(RoutedStore {
                local: local_store(context)?,
                shared: aws::open_store(context, &settings)?,
                machine_local: is_machine_local,
                made_here: Box::new(move |id| paths.sandbox_dir(id).exists()),
            }))
        }
    }
}

/// The team's shared table, when this machine uses one (`km init --aws`).
pub(crate) fn shared_store(context: &Context) -> CommandResult<Option<Box<dyn SandboxStore>>> {
    let settings = Settings::load(context)?;
    match settings.platform {
        PlatformChoice::Local => Ok(None),
        PlatformChoice::Aws => aws::open_store(context, &settings).map(Some),
    }
}

/// This machine's own records (created if missing).
pub(crate) fn local_store(context: &Context) -> CommandResult<Box<dyn SandboxStore>> {
    let file = context.paths.store_file();
    let store = SqliteStore::open(&file).map_err(|e| store_error(&file, e))?;
    Ok(Box::new(store))
}

/// Whether a platform's sandboxes belong to the machine that made them (their records never go
/// to a shared table): the local platform's run as processes of this machine.
pub(crate) fn is_machine_local(platform: &str) -> bool {
    platform == LOCAL
}

fn not_initialised(file: &std::path::Path) -> CommandError {
    CommandError::user(format!(
        "km is not initialised on this machine ({} does not exist)",
        file.display()
    ))
    .hint("run `km init`")
}

/// A kind of sandbox this km can make and reach.
pub(crate) struct Provider {
    /// The name its records carry.
    pub(crate) name: &'static str,
    /// The profile `substrate` that asks for it.
    pub(crate) substrate: Substrate,
    /// Opens it on this machine, from this machine's settings.
    open: fn(&Context) -> CommandResult<Arc<dyn Platform>>,
}

/// Every provider in this build: adding a kind of sandbox adds an entry here and a crate of
/// its own. A build without the `aws` feature has no EC2 provider, and says so once
/// ([`missing`]).
pub(crate) const PROVIDERS: &[Provider] = &[
    Provider {
        name: LOCAL,
        substrate: Substrate::Local,
        open: |context| Ok(Arc::new(local_platform(context))),
    },
    #[cfg(feature = "aws")]
    Provider {
        name: AWS,
        substrate: Substrate::Ec2,
        open: aws::platform,
    },
];

/// The providers km knows of, built in or not: the record name each substrate gets.
const KNOWN: [(Substrate, &str); 2] = [(Substrate::Local, LOCAL), (Substrate::Ec2, AWS)];

/// Why no provider of this build answers to `name`.
fn missing(name: &str) -> CommandError {
    #[cfg(not(feature = "aws"))]
    if name == AWS {
        return aws::not_built();
    }
    CommandError::user(format!(
        "this km does not know the platform {name:?} that the record names"
    ))
    .hint("use the km that created the sandbox, or a newer one")
}

/// The platform that runs `record`.
pub(crate) fn platform_for(
    context: &Context,
    record: &SandboxRecord,
) -> CommandResult<Arc<dyn Platform>> {
    let provider = PROVIDERS
        .iter()
        .find(|provider| provider.name == record.platform)
        .ok_or_else(|| missing(&record.platform))?;
    open(context, provider)
}

/// The platform a new sandbox of this substrate runs on.
pub(crate) fn platform_for_substrate(
    context: &Context,
    substrate: Substrate,
) -> CommandResult<Arc<dyn Platform>> {
    let provider = PROVIDERS
        .iter()
        .find(|provider| provider.substrate == substrate)
        .ok_or_else(|| {
            let name = KNOWN
                .iter()
                .find(|(known, _)| *known == substrate)
                .map_or("?", |(_, name)| name);
            missing(name)
        })?;
    open(context, provider)
}

/// `provider`'s platform, opened once per process.
fn open(context: &Context, provider: &'static Provider) -> CommandResult<Arc<dyn Platform>> {
    context
        .platforms
        .get_or_open(provider.name, || (provider.open)(context))
}

fn local_platform(context: &Context) -> LocalPlatform {
    // Only booting a sandbox needs sshd; listing, stopping or destroying one does not.
    let tools =
        find_tools(context.sshd_override.as_deref(), Some(&context.path_var)).map_err(|e| {
            if context.sshd_override.is_some() {
                format!("{e}; KM_SSHD must name an executable sshd by absolute path")
            } else {
                format!("{e}; {}", install_hint())
            }
        });
    let bwrap =
        km_local::isolation::find_bwrap(context.bwrap_override.as_deref(), Some(&context.path_var));
    LocalPlatform::new(
        context.paths.clone(),
        context.km_exe.clone(),
        tools,
        context.path_var.clone(),
        current_user(),
        bwrap,
    )
}

/// What `km init --aws` was asked to set up (read only by builds with the AWS platform).
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub(crate) struct AwsInit {
    pub(crate) region: Option<String>,
    pub(crate) table: String,
    pub(crate) instance_type: String,
    pub(crate) subnet: Option<String>,
    pub(crate) security_group: Option<String>,
    pub(crate) instance_profile: Option<String>,
    /// Deploy this km as the management component too.
    pub(crate) sidecars: bool,
    pub(crate) artifact_bucket: Option<String>,
    pub(crate) manager_function: String,
    /// The binary to deploy as the manager, when not this km.
    pub(crate) manager_binary: Option<std::path::PathBuf>,
    pub(crate) operator: Option<km_core::id::Operator>,
}

/// `km init --aws`: records the AWS settings and makes sure the record table exists.
pub(crate) fn init_aws(context: &Context, args: &AwsInit) -> CommandResult<std::process::ExitCode> {
    aws::init(context, args)
}

/// The manifest of the management component deployed on the AWS platform: `None` when none is
/// set up or the function is gone; an error when its code is not the build its manifest names.
pub(crate) fn aws_manager_manifest(context: &Context) -> CommandResult<Option<Manifest>> {
    aws::manager_manifest(context)
}

/// The sandboxes of create requests queued for, or being performed by, the AWS platform's
/// manager (none when this machine does not use AWS or has no manager).
pub(crate) fn aws_pending_creates(
    context: &Context,
) -> Result<Vec<km_core::id::SandboxId>, String> {
    if !uses_aws(context).unwrap_or(false) {
        return Ok(Vec::new());
    }
    aws::pending_creates(context)
}

/// The AWS manager's function, its configuration, and the table of its request items.
#[cfg(feature = "aws")]
pub(crate) type HandOffTarget = (
    km_aws::ManagerTarget,
    km_aws::DeployedManager,
    km_aws::AwsSettings,
);

/// Where `--remote` requests go on AWS: [`HandOffTarget`].
#[cfg(feature = "aws")]
pub(crate) fn aws_hand_off_target(context: &Context) -> CommandResult<HandOffTarget> {
    aws::hand_off_target(context)
}

/// The table of the AWS manager's request items: `None` when this machine does not use AWS or
/// has no manager.
#[cfg(feature = "aws")]
pub(crate) fn aws_manager_table(context: &Context) -> Result<Option<km_aws::AwsSettings>, String> {
    if !uses_aws(context).unwrap_or(false) {
        return Ok(None);
    }
    aws::manager_table(context)
}

/// The error of a build without the AWS platform.
#[cfg(not(feature = "aws"))]
pub(crate) fn aws_not_built() -> CommandError {
    aws::not_built()
}

/// A create request the AWS platform's manager has not made a record for yet, for `km list`.
pub(crate) struct PendingCreate {
    pub(crate) sandbox: String,
    /// `queued`, or `starting` once a manager has taken it (the sandbox's own word for that).
    pub(crate) state: &'static str,
    pub(crate) requested_by: Option<String>,
    /// Epoch seconds.
    pub(crate) queued_at: Option<u64>,
}

/// Create requests queued for, or taken by, the AWS platform's manager (none when this
/// machine does not use AWS, has no manager, or the requests cannot be read).
pub(crate) fn aws_pending_create_requests(context: &Context) -> Vec<PendingCreate> {
    if !uses_aws(context).unwrap_or(false) {
        return Vec::new();
    }
    aws::pending_create_requests(context)
}

/// The AWS platform's settings as the SDK side takes them.
#[cfg(feature = "aws")]
pub(crate) fn aws_sdk_settings(settings: &crate::settings::AwsSettings) -> km_aws::AwsSettings {
    aws::sdk_settings(settings)
}

/// Whether this machine's records live on the AWS platform.
pub(crate) fn uses_aws(context: &Context) -> CommandResult<bool> {
    Ok(Settings::load(context)?.platform == PlatformChoice::Aws)
}

#[cfg(not(feature = "aws"))]
mod aws {
    //! What a build without the `aws` feature says when the AWS platform is asked for.

    use km_core::record::SandboxStore;

    use crate::context::Context;
    use crate::error::{CommandError, CommandResult};
    use crate::settings::Settings;

    /// The command that builds a km with the AWS platform.
    pub(crate) const BUILD_WITH_AWS: &str = "cargo build --release --features aws";

    pub(crate) fn not_built() -> CommandError {
        CommandError::user("this km was built without the AWS platform (the `aws` feature)")
            .hint(format!("build one that has it: {BUILD_WITH_AWS}"))
    }

    pub(super) fn open_store(
        _context: &Context,
        _settings: &Settings,
    ) -> CommandResult<Box<dyn SandboxStore>> {
        Err(not_built())
    }

    pub(super) fn init(
        _context: &Context,
        _args: &super::AwsInit,
    ) -> CommandResult<std::process::ExitCode> {
        Err(not_built())
    }

    pub(super) fn manager_manifest(
        _context: &Context,
    ) -> CommandResult<Option<crate::manager_protocol::Manifest>> {
        Err(not_built())
    }

    pub(super) fn pending_creates(
        _context: &Context,
    ) -> Result<Vec<km_core::id::SandboxId>, String> {
        Ok(Vec::new())
    }

    pub(super) fn pending_create_requests(_context: &Context) -> Vec<super::PendingCreate> {
        Vec::new()
    }
}

#[cfg(feature = "aws")]
mod aws {
    //! The AWS platform: records in DynamoDB, sandboxes on EC2.

    use std::process::ExitCode;
    use std::sync::Arc;

    use km_aws::{DynamoStore, Ec2Platform, TableSetup};
    use km_core::platform::Platform;
    use km_core::record::SandboxStore;

    use super::AwsInit;
    use crate::context::Context;
    use crate::error::{CommandError, CommandResult};
    use crate::manager_protocol::Manifest;
    use crate::settings::{AwsSettings, PlatformChoice, Settings};
    use crate::ui;

    pub(crate) fn sdk_settings(settings: &AwsSettings) -> km_aws::AwsSettings {
        km_aws::AwsSettings {
            region: settings.region.clone(),
            table: settings.table.clone(),
            instance_type: settings.instance_type.clone(),
            subnet: settings.subnet.clone(),
            security_group: settings.security_group.clone(),
            instance_profile: settings.instance_profile.clone(),
        }
    }

    fn saved(context: &Context) -> CommandResult<AwsSettings> {
        Settings::load(context)?.aws.ok_or_else(|| {
            CommandError::user("the AWS platform is not set up on this machine")
                .hint("run `km init --aws --region <region>`")
        })
    }

    pub(super) fn open_store(
        _context: &Context,
        settings: &Settings,
    ) -> CommandResult<Box<dyn SandboxStore>> {
        let aws = settings.aws.as_ref().ok_or_else(|| {
            CommandError::user("km's settings choose AWS but hold no AWS settings")
                .hint("run `km init --aws --region <region>` again")
        })?;
        Ok(Box::new(DynamoStore::open(&sdk_settings(aws))?))
    }

    pub(super) fn platform(context: &Context) -> CommandResult<Arc<dyn Platform>> {
        Ok(Arc::new(Ec2Platform::new(sdk_settings(&saved(context)?))?))
    }

    pub(super) fn init(context: &Context, args: &AwsInit) -> CommandResult<ExitCode> {
        let region = args.region.clone().ok_or_else(|| {
            CommandError::user("km init --aws needs --region")
                .hint("km init --aws --region us-east-1")
        })?;
        if args.sidecars && args.artifact_bucket.is_none() {
            return Err(
                CommandError::user("km init --aws --sidecars needs --artifact-bucket")
                    .hint("km init --aws --region <region> --sidecars --artifact-bucket <bucket>"),
            );
        }
        let previous = Settings::load(context).ok().and_then(|s| s.aws);
        let wanted = AwsSettings {
            region,
            table: args.table.clone(),
            instance_type: args.instance_type.clone(),
            subnet: args.subnet.clone(),
            security_group: args.security_group.clone(),
            instance_profile: args.instance_profile.clone(),
            // Set by --sidecars; kept as they were otherwise.
            manager_bucket: args
                .artifact_bucket
                .clone()
                .or_else(|| previous.as_ref().and_then(|p| p.manager_bucket.clone())),
            manager_function: if args.sidecars {
                Some(args.manager_function.clone())
            } else {
                previous.and_then(|p| p.manager_function)
            },
        };
        // The table first: a failure leaves this machine's settings as they were.
        let setup = km_aws::ensure_table(&sdk_settings(&wanted)).map_err(|failure| {
            CommandError::user(format!(
                "cannot set up the record table {} in {}",
                wanted.table, wanted.region
            ))
            .cause(failure)
        })?;
        for dir in [context.paths.km_dir(), context.paths.keys_dir()] {
            km_core::atomic_file::ensure_private_dir(&dir, 0o700)
                .map_err(crate::error::io_at(&dir))?;
        }
        let mut settings = Settings::load(context).unwrap_or_default();
        let renamed = crate::ops::operator_state::name_operator(
            context,
            &mut settings,
            args.operator.as_ref(),
        );
        let unchanged = settings.platform == PlatformChoice::Aws
            && settings.aws.as_ref() == Some(&wanted)
            && setup == TableSetup::AlreadyThere
            && !renamed;
        settings.platform = PlatformChoice::Aws;
        settings.aws = Some(wanted.clone());
        settings.save(context)?;
        match setup {
            TableSetup::Created => ui::status(&format!(
                "✓ Created the record table {} in {}",
                wanted.table, wanted.region
            )),
            TableSetup::AlreadyThere => ui::status(&format!(
                "✓ Record table {} in {} is already there",
                wanted.table, wanted.region
            )),
        }
        if unchanged {
            ui::status("✓ Nothing to change: this machine was already set up exactly so");
        } else {
            ui::status("✓ This machine now uses the AWS platform (settings in ~/.km/config.json)");
        }
        if wanted.instance_profile.is_none() {
            ui::warn(&format!(
                "no --instance-profile: SSM can reach sandboxes only if this account has Default Host Management Configuration; without it km create refuses to launch. Set one: km init --aws --region {} --instance-profile <name> (docs/aws.md shows how to make it)",
                wanted.region
            ));
        }
        if args.sidecars {
            deploy_manager(context, &wanted, args.manager_binary.as_deref())?;
        } else {
            report_manager(context);
        }
        ui::status("next: km create profiles/ec2.yaml --alias my-poc");
        Ok(ExitCode::SUCCESS)
    }

    fn manager_target(settings: &AwsSettings) -> Option<km_aws::ManagerTarget> {
        Some(km_aws::ManagerTarget {
            region: settings.region.clone(),
            bucket: settings.manager_bucket.clone()?,
            function: settings.manager_function.clone()?,
        })
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

    fn manager_failure(
        target: &km_aws::ManagerTarget,
        failure: km_aws::AwsFailure,
    ) -> CommandError {
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
        settings: &AwsSettings,
        binary: Option<&std::path::Path>,
    ) -> CommandResult<()> {
        let target = manager_target(settings).ok_or_else(|| {
            CommandError::user("km init --aws --sidecars needs --artifact-bucket")
        })?;
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
        let platform = AwsSettings {
            manager_bucket: None,
            manager_function: None,
            ..settings.clone()
        };
        environment.insert(
            crate::manager_protocol::PLATFORM_VAR.to_owned(),
            serde_json::to_string(&platform)
                .map_err(|e| CommandError::user("cannot encode the AWS settings").cause(e))?,
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

    pub(super) fn pending_creates(
        context: &Context,
    ) -> Result<Vec<km_core::id::SandboxId>, String> {
        let settings = saved(context).map_err(|e| e.one_line())?;
        if manager_target(&settings).is_none() {
            return Ok(Vec::new());
        }
        let requests =
            km_aws::RequestTable::open(&sdk_settings(&settings)).map_err(|f| f.to_string())?;
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
        if manager_target(&settings).is_none() {
            return Vec::new();
        }
        let unfinished = km_aws::RequestTable::open(&sdk_settings(&settings))
            .and_then(|requests| requests.unfinished());
        unfinished
            .unwrap_or_default()
            .into_iter()
            .filter(|item| item.kind == "create")
            .map(|item| super::PendingCreate {
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
        Ok(manager_target(&settings).map(|_| sdk_settings(&settings)))
    }

    /// Where requests go: the function, its configuration, and the table of request items.
    pub(super) fn hand_off_target(context: &Context) -> CommandResult<super::HandOffTarget> {
        let settings = saved(context)?;
        let (_, deployed) = deployed_manager(context)?.ok_or_else(|| {
            CommandError::user("no management component is deployed on the AWS platform")
                .hint("km init --aws --region <region> --sidecars --artifact-bucket <bucket>")
        })?;
        let target = manager_target(&settings).ok_or_else(|| {
            CommandError::user("no management component is deployed on the AWS platform")
        })?;
        Ok((target, deployed, sdk_settings(&settings)))
    }

    /// The deployed manager's manifest and configuration, checked as `manager_manifest` says.
    fn deployed_manager(
        context: &Context,
    ) -> CommandResult<Option<(Manifest, km_aws::DeployedManager)>> {
        let settings = saved(context)?;
        let Some(target) = manager_target(&settings) else {
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
}

#[cfg(test)]
mod tests {
    use super::{KNOWN, PROVIDERS};

    #[test]
    fn each_provider_has_its_own_name_and_substrate_and_is_known() {
        for provider in PROVIDERS {
            assert_eq!(
                PROVIDERS.iter().filter(|p| p.name == provider.name).count(),
                1
            );
            assert_eq!(
                PROVIDERS
                    .iter()
                    .filter(|p| p.substrate == provider.substrate)
                    .count(),
                1
            );
            assert!(KNOWN.contains(&(provider.substrate, provider.name)));
        }
        assert_eq!(PROVIDERS.len(), if cfg!(feature = "aws") { 2 } else { 1 });
    }
}
