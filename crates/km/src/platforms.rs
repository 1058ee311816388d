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
        PlatformChoice::Aws => aws::open_store(context, &settings),
    }
}

fn not_initialised(file: &std::path::Path) -> CommandError {
    CommandError::user(format!(
        "km is not initialised on this machine ({} does not exist)",
        file.display()
    ))
    .hint("run `km init`")
}

/// The platform that runs `record`.
pub(crate) fn platform_for(
    context: &Context,
    record: &SandboxRecord,
) -> CommandResult<Arc<dyn Platform>> {
    platform_named(context, &record.platform)
}

/// The platform a new sandbox of this substrate runs on.
pub(crate) fn platform_for_substrate(
    context: &Context,
    substrate: Substrate,
) -> CommandResult<Arc<dyn Platform>> {
    match substrate {
        Substrate::Local => platform_named(context, LOCAL),
        Substrate::Ec2 => platform_named(context, AWS),
    }
}

fn platform_named(context: &Context, name: &str) -> CommandResult<Arc<dyn Platform>> {
    match name {
        LOCAL => Ok(Arc::new(local_platform(context))),
        AWS => aws::platform(context),
        other => Err(CommandError::user(format!(
            "this km does not know the platform {other:?} that the record names"
        ))
        .hint("use the km that created the sandbox, or a newer one")),
    }
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
    LocalPlatform::new(
        context.paths.clone(),
        context.km_exe.clone(),
        tools,
        context.path_var.clone(),
        current_user(),
    )
}

/// `km init --aws`: records the AWS settings and makes sure the record table exists.
pub(crate) fn init_aws(
    context: &Context,
    args: &crate::cli::InitArgs,
) -> CommandResult<std::process::ExitCode> {
    if args.sidecars {
        return Err(aws_manager_missing("km init --aws --sidecars")
            .hint("leave --sidecars out: km init --aws --region <region> …"));
    }
    aws::init(context, args)
}

/// The AWS platform's management component (a Lambda function fed from S3) is designed but not
/// built: asking for it fails before anything changes.
pub(crate) fn aws_manager_missing(what: &str) -> CommandError {
    CommandError::user(format!(
        "{what}: the AWS platform's management component (a Lambda function) is not part of this km; nothing was changed"
    ))
    .cause("its design is in docs/aws-management.md")
}

/// Whether this machine's records live on the AWS platform.
pub(crate) fn uses_aws(context: &Context) -> CommandResult<bool> {
    Ok(Settings::load(context)?.platform == PlatformChoice::Aws)
}

#[cfg(not(feature = "aws"))]
mod aws {
    //! What a build without the `aws` feature says when the AWS platform is asked for.

    use std::sync::Arc;

    use km_core::platform::Platform;
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

    pub(super) fn platform(_context: &Context) -> CommandResult<Arc<dyn Platform>> {
        Err(not_built())
    }

    pub(super) fn init(
        _context: &Context,
        _args: &crate::cli::InitArgs,
    ) -> CommandResult<std::process::ExitCode> {
        Err(not_built())
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

    use crate::cli::InitArgs;
    use crate::context::Context;
    use crate::error::{CommandError, CommandResult};
    use crate::settings::{AwsSettings, PlatformChoice, Settings};
    use crate::ui;

    fn sdk_settings(settings: &AwsSettings) -> km_aws::AwsSettings {
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

    pub(super) fn init(context: &Context, args: &InitArgs) -> CommandResult<ExitCode> {
        let region = args.region.clone().ok_or_else(|| {
            CommandError::user("km init --aws needs --region")
                .hint("km init --aws --region us-east-1")
        })?;
        let wanted = AwsSettings {
            region,
            table: args.table.clone(),
            instance_type: args.instance_type.clone(),
            subnet: args.subnet.clone(),
            security_group: args.security_group.clone(),
            instance_profile: args.instance_profile.clone(),
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
        let renamed = crate::commands::init::name_operator(context, &mut settings, args);
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
        ui::status("next: km create profiles/ec2.yaml --alias my-poc");
        Ok(ExitCode::SUCCESS)
    }
}
