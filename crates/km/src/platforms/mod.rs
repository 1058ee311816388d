//! The platform providers: which kinds of sandbox this km can make, how each opens from this
//! machine's settings, and which store serves a command (this machine's SQLite, plus the
//! team's table when `km init` chose a provider that has one). This is the one place that
//! knows the concrete platforms; commands see only the traits.
//!
//! Each provider lives in a module of its own ([`local`], `aws`) with its crate behind it
//! (`km-local`, `km-aws`); adding one adds an entry to [`PROVIDERS`], its module and its
//! `km init` options ([`InitOptions`]).

mod init_options;
mod local;

use std::process::ExitCode;
use std::sync::Arc;

use km_core::id::Operator;
use km_core::platform::Platform;
use km_core::profile::{FieldError, Profile, ProfileError, Runtime};
use km_core::record::SandboxStore;
use km_local::store::SqliteStore;

pub(crate) use self::init_options::InitOptions;
use crate::context::{Context, store_error};
use crate::error::{CommandError, CommandResult};
use crate::manager_protocol::Manifest;
use crate::routed_store::RoutedStore;
use crate::settings::Settings;

/// The name the local platform records.
pub(crate) const LOCAL: &str = "local";
/// The name the AWS platform records.
pub(crate) const AWS: &str = "aws";

/// A kind of sandbox this km can make and reach.
pub(crate) struct Provider {
    /// The name its records carry, and its section of the settings file.
    pub(crate) name: &'static str,
    /// The profile `substrate` that asks for it.
    pub(crate) substrate: &'static str,
    /// The `spec.runtime` fields its profiles take.
    runtime_keys: &'static [&'static str],
    /// Reads a profile's `spec.runtime` fields as its own, with its defaults filled in.
    read_runtime: fn(&Runtime) -> Result<Runtime, Vec<FieldError>>,
    /// Whether its sandboxes belong to the machine that made them: their records never go to
    /// a team's table (the local platform's run as processes of this machine).
    machine_local: bool,
    /// Opens it on this machine, from this machine's settings.
    open: fn(&Context) -> CommandResult<Arc<dyn Platform>>,
    /// The store the team shares, for a provider that has one (chosen by `km init`).
    shared_store: Option<OpenSharedStore>,
}

/// Opens a provider's shared store from this machine's settings.
type OpenSharedStore = fn(&Context, &Settings) -> CommandResult<Box<dyn SandboxStore>>;

/// Every provider in this build: adding a kind of sandbox adds an entry here and a module and
/// crate of its own. A build without the `aws` feature has no EC2 provider, and says so once
/// ([`missing`]).
pub(crate) const PROVIDERS: &[Provider] = &[
    Provider {
        name: LOCAL,
        substrate: "local",
        runtime_keys: km_local::runtime::LocalRuntime::KEYS,
        read_runtime: |runtime| {
            km_local::runtime::LocalRuntime::of(runtime).map(|own| runtime.with_section(&own))
        },
        machine_local: true,
        open: local::platform,
        shared_store: None,
    },
    #[cfg(feature = "aws")]
    Provider {
        name: AWS,
        substrate: "ec2",
        runtime_keys: km_aws::Ec2Runtime::KEYS,
        read_runtime: |runtime| {
            km_aws::Ec2Runtime::of(runtime).map(|own| runtime.with_section(&own))
        },
        machine_local: false,
        open: aws::platform,
        shared_store: Some(aws::open_store),
    },
];

/// The providers km knows of, built in or not: the record name each substrate gets.
const KNOWN: [(&str, &str); 2] = [("local", LOCAL), ("ec2", AWS)];

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

fn provider_named(name: &str) -> CommandResult<&'static Provider> {
    PROVIDERS
        .iter()
        .find(|provider| provider.name == name)
        .ok_or_else(|| missing(name))
}

/// The store `km init` chose for this machine: its own SQLite, or the team's table for
/// that provider's sandboxes with this machine's own beside it.
pub(crate) fn open_store(context: &Context) -> CommandResult<Box<dyn SandboxStore>> {
    let settings = Settings::load(context)?;
    if settings.platform == LOCAL {
        let file = context.paths.store_file();
        if !file.exists() {
            return Err(not_initialised(&file));
        }
        return local_store(context);
    }
    let shared = shared_store_of(context, &settings)?;
    let paths = context.paths.clone();
    Ok(Box::new(RoutedStore {
        local: local_store(context)?,
        shared,
        machine_local: is_machine_local,
        made_here: Box::new(move |id| paths.sandbox_dir(id).exists()),
    }))
}

/// The team's shared table, when this machine uses one (`km init --aws`).
pub(crate) fn shared_store(context: &Context) -> CommandResult<Option<Box<dyn SandboxStore>>> {
    let settings = Settings::load(context)?;
    if settings.platform == LOCAL {
        return Ok(None);
    }
    shared_store_of(context, &settings).map(Some)
}

fn shared_store_of(context: &Context, settings: &Settings) -> CommandResult<Box<dyn SandboxStore>> {
    let name = &settings.platform;
    let rewrite = |why: &str| {
        CommandError::user(format!(
            "{} chooses the platform {name:?}, {why}",
            context.paths.config_file().display()
        ))
        .hint("run `km init` (or `km init --aws …`) again to rewrite it")
    };
    let provider = match PROVIDERS.iter().find(|provider| provider.name == *name) {
        Some(provider) => provider,
        None if KNOWN.iter().any(|(_, known)| known == name) => return Err(missing(name)),
        None => return Err(rewrite("which this km does not know")),
    };
    let open = provider
        .shared_store
        .ok_or_else(|| rewrite("which has no shared store"))?;
    open(context, settings)
}

/// This machine's own records (created if missing).
pub(crate) fn local_store(context: &Context) -> CommandResult<Box<dyn SandboxStore>> {
    let file = context.paths.store_file();
    let store = SqliteStore::open(&file).map_err(|e| store_error(&file, e))?;
    Ok(Box::new(store))
}

/// Whether a platform's sandboxes belong to the machine that made them (their records never go
/// to a shared table).
pub(crate) fn is_machine_local(platform: &str) -> bool {
    // A platform this build lacks is one whose records a team can share: only the local
    // platform's are this machine's, and every build has it.
    PROVIDERS
        .iter()
        .any(|provider| provider.name == platform && provider.machine_local)
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
    record: &km_core::record::SandboxRecord,
) -> CommandResult<Arc<dyn Platform>> {
    open(context, provider_named(&record.platform)?)
}

/// The platform a new sandbox of this substrate runs on.
pub(crate) fn platform_for_substrate(
    context: &Context,
    substrate: &str,
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

/// Has the provider of `profile`'s substrate read its `spec.runtime` fields (defaults filled
/// in), or says, at each field's place in `file`, what it refused. A substrate this build has
/// no provider for keeps its fields unchecked (`km create` refuses it, naming the build).
pub(crate) fn read_runtime(
    profile: &mut Profile,
    file: &std::path::Path,
) -> Result<(), Vec<ProfileError>> {
    let runtime = profile.runtime();
    let at = |key: &str, message: String| ProfileError {
        file: file.to_owned(),
        position: runtime.position_of(key),
        key_path: Some(format!("spec.runtime.{key}")),
        message,
    };
    let substrate = runtime.substrate();
    let Some(provider) = PROVIDERS.iter().find(|p| p.substrate == substrate) else {
        if KNOWN.iter().any(|(known, _)| *known == substrate) {
            return Ok(());
        }
        let known: Vec<&str> = KNOWN.iter().map(|(known, _)| *known).collect();
        return Err(vec![at(
            "substrate",
            format!(
                "unknown substrate {substrate:?}; km makes {} sandboxes",
                known.join(", ")
            ),
        )]);
    };
    match (provider.read_runtime)(&runtime) {
        Ok(read) => {
            profile.set_runtime(read);
            Ok(())
        }
        Err(errors) => Err(errors
            .into_iter()
            .map(|error| {
                // A field of another provider's: most likely a forgotten or misspelt substrate.
                let other = PROVIDERS.iter().find(|other| {
                    other.substrate != substrate && other.runtime_keys.contains(&error.key.as_str())
                });
                let message = match other {
                    Some(other) if !provider.runtime_keys.contains(&error.key.as_str()) => format!(
                        "applies to {0} sandboxes only, and this profile's substrate is {substrate} (set `substrate: {0}`, or remove the field)",
                        other.substrate
                    ),
                    _ => error.message,
                };
                ProfileError {
                    position: error.position,
                    ..at(&error.key, message)
                }
            })
            .collect()),
    }
}

/// `km init` for a provider whose store the team shares, when its options ask for one
/// (`--aws`); `None` when they do not, for the local platform's `km init`.
pub(crate) fn init_shared(
    context: &Context,
    options: &InitOptions,
    operator: Option<&Operator>,
    sidecars: bool,
) -> Option<CommandResult<ExitCode>> {
    options
        .aws
        .aws
        .then(|| aws::init(context, &options.aws, operator, sidecars))
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

/// A create request a platform's management component has not made a record for yet, for
/// `km list`.
pub(crate) struct PendingCreate {
    /// The platform it will run on.
    pub(crate) platform: &'static str,
    pub(crate) sandbox: String,
    /// `queued`, or `starting` once a manager has taken it (the sandbox's own word for that).
    pub(crate) state: &'static str,
    pub(crate) requested_by: Option<String>,
    /// Epoch seconds.
    pub(crate) queued_at: Option<u64>,
}

/// Create requests queued for, or taken by, the management component of the platform whose
/// store this machine shares (none when it shares none, has no manager there, or the requests
/// cannot be read).
pub(crate) fn pending_create_requests(context: &Context) -> Vec<PendingCreate> {
    if !uses_aws(context).unwrap_or(false) {
        return Vec::new();
    }
    aws::pending_create_requests(context)
}

/// The `aws` section of `settings` (what `km init --aws` saved), if there is one.
#[cfg(feature = "aws")]
pub(crate) fn aws_section(
    context: &Context,
    settings: &Settings,
) -> CommandResult<Option<km_aws::SavedSettings>> {
    aws::section(context, settings)
}

/// Whether this machine's records live on the AWS platform.
pub(crate) fn uses_aws(context: &Context) -> CommandResult<bool> {
    Ok(Settings::load(context)?.platform == AWS)
}

#[cfg(not(feature = "aws"))]
#[path = "aws_absent.rs"]
mod aws;
#[cfg(feature = "aws")]
mod aws;

#[cfg(test)]
mod tests {
    use super::{KNOWN, LOCAL, PROVIDERS};

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
            for key in provider.runtime_keys {
                assert!(key.chars().all(|c| c.is_ascii_alphanumeric()), "{key}");
            }
        }
        assert_eq!(PROVIDERS.len(), if cfg!(feature = "aws") { 2 } else { 1 });
        assert_eq!(crate::settings::MACHINE_ONLY, LOCAL);
        assert_eq!(crate::settings::Settings::default().platform, LOCAL);
    }
}
