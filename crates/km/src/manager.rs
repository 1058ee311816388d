//! The platform's management component, on the local platform: `km init --sidecars` installs a
//! copy of km under `~/.km/platform/` with a manifest of what it understands;
//! `km create --remote` and `km destroy --remote` hand requests to it through a queue
//! directory, wake it, and wait for its result. It performs them as its own process.
//!
//! A manager older than the operator's km once dropped the operator's public key without a
//! word and booted sandboxes nobody could log in to. Here the CLI refuses before anything is
//! made when the manifest lacks a field the request carries, and the manager decodes requests
//! strictly: an unknown field is an error written back to the request, never ignored.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use km_core::atomic_file::{FileLock, ensure_private_dir, write_atomic};
use km_core::id::{Alias, SandboxId};
use km_core::profile::{Profile, SearchPath};

use crate::cli::{CreateArgs, DestroyArgs};
use crate::context::Context;
use crate::error::{CommandError, CommandResult, ErrorKind, io_at};
use crate::interrupts::Interrupts;
pub(crate) use crate::manager_protocol::{
    CreateRequest, DestroyRequest, Manifest, Outcome, VSCODE_KEY_FIELD, build_id, difference,
};
use crate::ops::destroy::OperatorState;
use crate::ops::operator_state::forget_operator_state;
use crate::ops::provision::{Maker, Plan, make};
use crate::ops::sandbox_handle::SandboxHandle;
use crate::platforms;
use crate::remote_request::{create_request, created_remotely, request_id, single_key_line};
use crate::ui;

/// How long the CLI waits for the manager to finish a request.
const WAIT_LIMIT: Duration = Duration::from_secs(20 * 60);
const POLL: Duration = Duration::from_millis(100);

/// The manager's files.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn of(context: &Context) -> Self {
        Self {
            dir: context.paths.km_dir().join("platform"),
        }
    }
    fn manager(&self) -> PathBuf {
        self.dir.join("km-manager")
    }
    fn manifest(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }
    fn queue(&self) -> PathBuf {
        self.dir.join("queue")
    }
    fn results(&self) -> PathBuf {
        self.dir.join("results")
    }
    /// Requests a manager has claimed (moved out of the queue) and is performing.
    fn working(&self) -> PathBuf {
        self.dir.join("working")
    }
    /// Queue entries that were not requests (not regular files), set aside with their names.
    fn rejected(&self) -> PathBuf {
        self.dir.join("rejected")
    }
    fn lock(&self) -> PathBuf {
        self.dir.join("manager.lock")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("manager.log")
    }
}

const SIDECARS: &str = "km init --sidecars";

/// `km init --sidecars`: installs this km as the manager, with its manifest.
pub(crate) fn install(context: &Context) -> CommandResult<()> {
    let layout = Layout::of(context);
    for dir in [
        &layout.dir,
        &layout.queue(),
        &layout.results(),
        &layout.working(),
        &layout.rejected(),
    ] {
        ensure_private_dir(dir, 0o700).map_err(io_at(dir))?;
    }
    let wanted = Manifest::of_this_build(&context.km_exe)?;
    if installed(&layout)
        .is_some_and(|(manifest, exe_id)| manifest == wanted && exe_id == wanted.build_id)
    {
        ui::status(&format!(
            "✓ Management component is already {} (knows {VSCODE_KEY_FIELD})",
            wanted.short()
        ));
        return Ok(());
    }
    // The copy is made whole, then renamed over the old one: a manager is never half-written.
    let bytes = std::fs::read(&context.km_exe).map_err(io_at(&context.km_exe))?;
    write_atomic(&layout.manager(), &bytes, 0o700).map_err(io_at(&layout.manager()))?;
    // The manifest comes from the installed copy itself, so it says what that binary knows.
    let output = Command::new(layout.manager())
        .args(["__manager", "manifest"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CommandError::user("cannot run the installed manager").cause(e))?;
    let manifest: Manifest = serde_json::from_slice(&output.stdout).map_err(|e| {
        CommandError::user("the installed manager did not describe itself")
            .cause(e)
            .cause(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    })?;
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| CommandError::internal(format!("cannot encode the manifest: {e}")))?;
    write_atomic(&layout.manifest(), format!("{text}\n").as_bytes(), 0o600)
        .map_err(io_at(&layout.manifest()))?;
    ui::status(&format!(
        "✓ Management component {} installed at {} (knows {})",
        manifest.short(),
        layout.manager().display(),
        manifest.request_fields.join(", ")
    ));
    Ok(())
}

/// The installed manifest, and the build ID of the installed binary, when both are there.
fn installed(layout: &Layout) -> Option<(Manifest, String)> {
    let manifest = serde_json::from_slice(&std::fs::read(layout.manifest()).ok()?).ok()?;
    let exe_id = build_id(&layout.manager()).ok()?;
    Some((manifest, exe_id))
}

/// Whether the installed manager is this km: `None` when none is installed, else what it is
/// (`Ok`) or what is wrong with it (`Err`).
pub(crate) fn status(context: &Context) -> Option<Result<String, String>> {
    let layout = Layout::of(context);
    if !layout.manifest().exists() {
        return None;
    }
    let this = match Manifest::of_this_build(&context.km_exe) {
        Ok(this) => this,
        Err(e) => return Some(Err(e.one_line())),
    };
    Some(match installed(&layout) {
        Some((manifest, exe_id))
            if manifest.build_id == this.build_id && exe_id == this.build_id =>
        {
            Ok(format!("{} (this km)", manifest.short()))
        }
        Some((manifest, _)) if manifest.build_id == this.build_id => Err(format!(
            "the management component's program {} was replaced: it is not the build its manifest names ({}) — run: {SIDECARS}",
            layout.manager().display(),
            manifest.short()
        )),
        Some((manifest, _)) => Err(difference(&manifest, &this, SIDECARS)),
        None => Err(format!(
            "the management component under {} is damaged — run: {SIDECARS}",
            layout.dir.display()
        )),
    })
}

/// `km init` without `--sidecars`: says when the installed manager is not this km.
pub(crate) fn report(context: &Context) {
    match status(context) {
        None => {}
        Some(Ok(what)) => ui::status(&format!("✓ Management component is {what}")),
        Some(Err(why)) => ui::warn(&why),
    }
}

/// Refuses a manager that does not decode every field in `fields`.
fn knows_every_field(manifest: &Manifest, fields: &[&str], update: &str) -> CommandResult<()> {
    let missing: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| !manifest.request_fields.iter().any(|known| known == f))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(CommandError::user(format!(
        "management component is {} (does not know {}) — run: {update}",
        manifest.short(),
        missing.join(", ")
    ))
    .cause("a sandbox it made would not get your key, and ssh into it would fail")
    .hint(update.to_owned()))
}

/// The installed manager, checked to understand every field in `fields`.
fn usable_manager(context: &Context, layout: &Layout, fields: &[&str]) -> CommandResult<Manifest> {
    let Ok(bytes) = std::fs::read(layout.manifest()) else {
        return Err(
            CommandError::user("no management component is installed on this platform")
                .hint(SIDECARS),
        );
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        CommandError::user(format!(
            "the management component's manifest {} is unreadable",
            layout.manifest().display()
        ))
        .cause(e)
        .hint(SIDECARS)
    })?;
    knows_every_field(&manifest, fields, SIDECARS)?;
    match build_id(&layout.manager()) {
        Ok(id) if id == manifest.build_id => {
            // Another build that knows every field is used, but never silently.
            if let Ok(this) = Manifest::of_this_build(&context.km_exe)
                && this.build_id != manifest.build_id
            {
                ui::warn(&format!(
                    "the management component is {}, another build than this {}; it knows every field this request carries, so it is used — to make it this build: {SIDECARS}",
                    manifest.short(),
                    this.short()
                ));
            }
            Ok(manifest)
        }
        _ => Err(CommandError::user(format!(
            "the management component at {} is not the build its manifest describes",
            layout.manager().display()
        ))
        .hint(SIDECARS)),
    }
}

/// Queues `request` (as JSON) and starts a manager to work the queue.
fn submit(layout: &Layout, request_id: &str, request: &serde_json::Value) -> CommandResult<Child> {
    let text = serde_json::to_vec_pretty(request)
        .map_err(|e| CommandError::internal(format!("cannot encode the request: {e}")))?;
    let path = layout.queue().join(format!("{request_id}.json"));
    write_atomic(&path, &text, 0o600).map_err(io_at(&path))?;
    wake(layout)
}

/// Starts a manager process, detached from this terminal, logging to `manager.log`.
fn wake(layout: &Layout) -> CommandResult<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.log())
        .map_err(io_at(&layout.log()))?;
    let log_err = log.try_clone().map_err(io_at(&layout.log()))?;
    let mut command = Command::new(layout.manager());
    command
        .args(["__manager", "serve"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command.spawn().map_err(|e| {
        CommandError::user(format!(
            "cannot start the manager {}",
            layout.manager().display()
        ))
        .cause(e)
        .hint(SIDECARS)
    })
}

/// Why the CLI stopped waiting for a request without its outcome.
enum GaveUp {
    /// Ctrl-C (or SIGTERM/SIGHUP).
    Interrupted,
    /// The manager process exited and wrote no result.
    ManagerExited,
    /// [`WAIT_LIMIT`] passed.
    TimedOut,
}

/// Reads the manager's outcome for `request_id`, if it wrote one, and removes it: a result
/// the CLI has read is kept nowhere.
fn take_result(layout: &Layout, request_id: &str) -> CommandResult<Option<Outcome>> {
    let path = layout.results().join(format!("{request_id}.json"));
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let outcome = serde_json::from_slice(&bytes).map_err(|e| {
        CommandError::user(format!(
            "the manager's result {} is unreadable",
            path.display()
        ))
        .cause(e)
    })?;
    let _ = std::fs::remove_file(&path);
    Ok(Some(outcome))
}

/// Waits for the manager's outcome for `request_id`, until it comes, the manager exits
/// without it, a stop signal arrives or the wait limit passes.
fn wait_for(
    layout: &Layout,
    request_id: &str,
    mut manager: Child,
    label: &str,
    interrupts: &Interrupts,
) -> CommandResult<Result<Outcome, GaveUp>> {
    let _spinner = ui::Spinner::start(label);
    let deadline = Instant::now() + WAIT_LIMIT;
    let mut manager_done = false;
    let gave_up = loop {
        if let Some(outcome) = take_result(layout, request_id)? {
            if !manager_done {
                // Reaped later is fine, but never left as a zombie of ours.
                std::thread::spawn(move || manager.wait());
            }
            return Ok(Ok(outcome));
        }
        if interrupts.received() {
            break GaveUp::Interrupted;
        }
        if !manager_done && manager.try_wait().ok().flatten().is_some() {
            manager_done = true;
            // The result may have landed just before the manager exited.
            continue;
        }
        if manager_done {
            break GaveUp::ManagerExited;
        }
        if Instant::now() > deadline {
            break GaveUp::TimedOut;
        }
        std::thread::sleep(POLL);
    };
    if !manager_done {
        std::thread::spawn(move || manager.wait());
    }
    Ok(Err(gave_up))
}

/// What became of a request the CLI stopped waiting for.
enum Withdrawal {
    /// Taken out of the queue before any manager started it: nothing of it will happen.
    Withdrawn,
    /// A manager had already started it; it goes on without the CLI.
    Started,
    /// It finished meanwhile.
    Finished(Outcome),
}

/// Takes `request_id` out of the queue if no manager has claimed it yet. A manager claims a
/// request by renaming it out of the queue, so exactly one of the two wins.
fn withdraw(layout: &Layout, request_id: &str) -> CommandResult<Withdrawal> {
    let queued = layout.queue().join(format!("{request_id}.json"));
    match std::fs::remove_file(&queued) {
        Ok(()) => return Ok(Withdrawal::Withdrawn),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_at(&queued)(e));
        }
        Err(_) => {}
    }
    Ok(match take_result(layout, request_id)? {
        Some(outcome) => Withdrawal::Finished(outcome),
        None => Withdrawal::Started,
    })
}

/// The error for a request the CLI gave up on that a manager is still performing.
fn still_running(layout: &Layout, what: &str, gave_up: &GaveUp, follow: &str) -> CommandError {
    let why = match gave_up {
        GaveUp::Interrupted => "interrupted",
        GaveUp::ManagerExited => "the manager that was started exited without a result",
        GaveUp::TimedOut => "gave up waiting",
    };
    let mut error = CommandError::user(format!(
        "{why}, but the management component had already started to {what}: it goes on without this terminal"
    ))
    .hint(follow.to_owned())
    .hint(format!("its log: {}", layout.log().display()));
    if matches!(gave_up, GaveUp::Interrupted) {
        error.kind = crate::error::ErrorKind::Interrupted;
    }
    error
}

/// The error for a request taken back before it started.
fn withdrawn(layout: &Layout, what: &str, gave_up: &GaveUp, retry: &str) -> CommandError {
    let why = match gave_up {
        GaveUp::Interrupted => "interrupted".to_owned(),
        GaveUp::ManagerExited => format!(
            "the manager exited without performing the request (see {})",
            layout.log().display()
        ),
        GaveUp::TimedOut => "no manager started the request in time".to_owned(),
    };
    let mut error = CommandError::user(format!(
        "{why}: the request to {what} was withdrawn before it started; nothing of it will happen"
    ))
    .hint(retry.to_owned());
    if matches!(gave_up, GaveUp::Interrupted) {
        error.kind = crate::error::ErrorKind::Interrupted;
    }
    error
}

/// A request as the operator sees it, for the messages when the wait ends early.
struct Asked {
    /// `create sb-…`.
    what: String,
    /// What the spinner says while it waits.
    spinner: String,
    /// The command that asks again.
    retry: String,
    /// How to follow a request that goes on without the CLI.
    follow: String,
}

/// What came of a request the CLI waited for.
enum Waited {
    /// The manager's outcome.
    Outcome(Outcome),
    /// Taken back before any manager started it.
    Withdrawn(CommandError),
    /// Started by a manager; it goes on without the CLI.
    StillRunning(CommandError),
}

/// Waits for `request_id`; when the wait ends without an outcome, withdraws the request if no
/// manager has claimed it yet.
fn wait_or_withdraw(
    layout: &Layout,
    request_id: &str,
    manager: Child,
    interrupts: &Interrupts,
    asked: &Asked,
) -> CommandResult<Waited> {
    let gave_up = match wait_for(layout, request_id, manager, &asked.spinner, interrupts)? {
        Ok(outcome) => return Ok(Waited::Outcome(outcome)),
        Err(gave_up) => gave_up,
    };
    Ok(match withdraw(layout, request_id)? {
        Withdrawal::Finished(outcome) => Waited::Outcome(outcome),
        Withdrawal::Withdrawn => {
            Waited::Withdrawn(withdrawn(layout, &asked.what, &gave_up, &asked.retry))
        }
        Withdrawal::Started => {
            Waited::StillRunning(still_running(layout, &asked.what, &gave_up, &asked.follow))
        }
    })
}

/// How the AWS platform's manager is brought up to date.
const AWS_SIDECARS: &str = "km init --aws --region <region> --sidecars --artifact-bucket <bucket>";

/// The manager deployed on the AWS platform, checked to understand every field in `fields`.
fn aws_manager_checked(context: &Context, fields: &[&str]) -> CommandResult<Manifest> {
    let manifest = crate::platforms::aws_manager_manifest(context)?.ok_or_else(|| {
        CommandError::user("no management component is deployed on the AWS platform")
            .hint(AWS_SIDECARS)
    })?;
    knows_every_field(&manifest, fields, "km init --sidecars").map_err(|e| e.hint(AWS_SIDECARS))?;
    Ok(manifest)
}

/// `km create --remote` on AWS, after the version check.
#[cfg(feature = "aws")]
fn hand_off_create(
    context: &Context,
    args: &CreateArgs,
    profile: &Profile,
    alias: Option<Alias>,
) -> CommandResult<ExitCode> {
    crate::manager_hand_off::create_remote(context, args, profile, alias)
}

/// Requests to the shared platform's management component that waited too long or were left
/// behind; with `fix`, a waiting one is withdrawn. None when this machine shares no platform.
#[cfg(feature = "aws")]
pub(crate) fn stale_requests(
    context: &Context,
    fix: bool,
) -> Result<Vec<crate::manager_protocol::StaleRequest>, String> {
    crate::manager_hand_off::stale_requests(context, fix)
}

/// A build without the AWS platform shares no platform's store, so has no such requests.
#[cfg(not(feature = "aws"))]
pub(crate) fn stale_requests(
    _context: &Context,
    _fix: bool,
) -> Result<Vec<crate::manager_protocol::StaleRequest>, String> {
    Ok(Vec::new())
}

/// Without the AWS platform, the version check above has already refused.
#[cfg(not(feature = "aws"))]
fn hand_off_create(
    _context: &Context,
    _args: &CreateArgs,
    _profile: &Profile,
    _alias: Option<Alias>,
) -> CommandResult<ExitCode> {
    Err(crate::platforms::aws_not_built())
}

/// `km destroy --remote` on AWS, after the version check.
#[cfg(feature = "aws")]
fn hand_off_destroy(
    context: &Context,
    id: &SandboxId,
    request_id: &str,
    request: serde_json::Value,
) -> CommandResult<ExitCode> {
    crate::manager_hand_off::destroy_remote(context, id, request_id, request)
}

#[cfg(not(feature = "aws"))]
fn hand_off_destroy(
    _context: &Context,
    _id: &SandboxId,
    _request_id: &str,
    _request: serde_json::Value,
) -> CommandResult<ExitCode> {
    Err(crate::platforms::aws_not_built())
}

/// `km create --remote`: the keypair is made here, the sandbox by the manager.
pub(crate) fn create_remote(
    context: &Context,
    args: &CreateArgs,
    profile: &Profile,
    alias: Option<Alias>,
) -> CommandResult<ExitCode> {
    if crate::platforms::uses_aws(context)? {
        // The version check runs first: a stale manager is the failure that must never pass.
        aws_manager_checked(context, CreateRequest::FIELDS)?;
        return hand_off_create(context, args, profile, alias);
    }
    let layout = Layout::of(context);
    // Checked before anything is made: a stale manager would boot a sandbox without the key.
    usable_manager(context, &layout, CreateRequest::FIELDS)?;
    let (id, request_id, request) = create_request(context, args, profile, alias)?;
    // Held from before the request is queued, so a Ctrl-C can always withdraw it.
    let interrupts = Interrupts::hold()
        .map_err(|e| CommandError::user("cannot install km's signal handlers").cause(e))?;
    let manager = match submit(&layout, &request_id, &request) {
        Ok(manager) => manager,
        Err(error) => {
            // The request may have been written before the manager failed to start: take it
            // back, and never say "nothing was submitted" when that did not work.
            let error = match withdraw(&layout, &request_id) {
                Ok(Withdrawal::Withdrawn) | Err(_)
                    if layout.queue().join(format!("{request_id}.json")).exists() =>
                {
                    return Err(error.cause(format!(
                        "request {request_id} may still be queued in {}; remove it before a manager starts",
                        layout.queue().display()
                    )));
                }
                _ => error,
            };
            return Err(match forget_operator_state(context, &id) {
                Ok(()) => error.cause(format!("nothing was submitted; the keypair made for {id} was removed")),
                Err(e) => error.cause(format!(
                    "nothing was submitted, but the keypair made for {id} could not be removed ({}); remove it with km doctor --fix",
                    e.message
                )),
            });
        }
    };
    ui::status(&format!(
        "✓ Create request for {id} handed to the management component"
    ));
    if args.no_wait {
        ui::data(id.as_str());
        ui::status(&format!(
            "next: km list shows it once it is made; then km vscode start {id}"
        ));
        std::thread::spawn(move || {
            let mut manager = manager;
            manager.wait()
        });
        return Ok(ExitCode::SUCCESS);
    }
    let asked = Asked {
        what: format!("create {id}"),
        spinner: format!("creating {id}"),
        retry: format!("km create {} --remote", args.profile.display()),
        follow: format!(
            "follow it with km list; once {id} is running, km vscode start {id} pins its host key and connects"
        ),
    };
    let outcome = match wait_or_withdraw(&layout, &request_id, manager, &interrupts, &asked)? {
        Waited::Outcome(outcome) => outcome,
        Waited::Withdrawn(error) => {
            return Err(match forget_operator_state(context, &id) {
                Ok(()) => error.cause(format!("the keypair made for {id} was removed")),
                Err(e) => error.cause(format!(
                    "the keypair made for {id} could not be removed ({}); km doctor --fix removes it",
                    e.message
                )),
            });
        }
        Waited::StillRunning(error) => return Err(error),
    };
    if outcome.state != "done" {
        let removed = forget_operator_state(context, &id);
        let mut error =
            CommandError::user(format!("the management component could not create {id}"))
                .cause(outcome.error.unwrap_or_else(|| "no reason given".into()));
        error = match removed {
            Ok(()) => error.cause("the local keypair made for it was removed"),
            Err(e) => error.cause(format!(
                "the local keypair could not be removed: {}",
                e.message
            )),
        };
        return Err(error.hint(format!("see {}", layout.log().display())));
    }
    created_remotely(context, &id, profile)
}

/// `km destroy --remote`: the manager destroys; this machine's keys, Host entry and pin go
/// once it reports the sandbox gone.
pub(crate) fn destroy_remote(
    context: &Context,
    args: &DestroyArgs,
    id: &SandboxId,
) -> CommandResult<ExitCode> {
    let request_id = request_id(id, "destroy");
    let request =
        serde_json::json!({ "request_id": request_id, "sandbox_id": id, "force": args.force });
    if crate::platforms::uses_aws(context)? {
        aws_manager_checked(context, &[])?;
        return hand_off_destroy(context, id, &request_id, request);
    }
    let layout = Layout::of(context);
    usable_manager(context, &layout, &[])?;
    let interrupts = Interrupts::hold()
        .map_err(|e| CommandError::user("cannot install km's signal handlers").cause(e))?;
    let manager = submit(&layout, &request_id, &request)?;
    let asked = Asked {
        what: format!("destroy {id}"),
        spinner: format!("destroying {id}"),
        retry: format!("km destroy {id} --remote"),
        follow: format!(
            "follow it with km list; once {id} is gone, km doctor --fix removes this machine's key, ssh config entry and host key pin for it"
        ),
    };
    let outcome = match wait_or_withdraw(&layout, &request_id, manager, &interrupts, &asked)? {
        Waited::Outcome(outcome) => outcome,
        Waited::Withdrawn(error) | Waited::StillRunning(error) => return Err(error),
    };
    if outcome.state != "done" {
        return Err(
            CommandError::user(format!("the management component could not destroy {id}"))
                .cause(outcome.error.unwrap_or_else(|| "no reason given".into()))
                .hint(format!(
                    "see {}, then km destroy {} --yes",
                    layout.log().display(),
                    args.sandbox
                )),
        );
    }
    forget_operator_state(context, id)?;
    ui::status(&format!(
        "✓ Sandbox {id} destroyed by the management component (keys, ssh config entry and host key pin removed here)"
    ));
    Ok(ExitCode::SUCCESS)
}

/// `km __manager manifest`: what this build understands.
pub(crate) fn print_manifest(context: &Context) -> CommandResult<ExitCode> {
    let manifest = Manifest::of_this_build(&context.km_exe)?;
    ui::data(
        &serde_json::to_string(&manifest)
            .map_err(|e| CommandError::internal(format!("cannot encode the manifest: {e}")))?,
    );
    Ok(ExitCode::SUCCESS)
}

/// How long a result nobody read is kept (a `--no-wait` request's, or one whose CLI died).
const RESULT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// `km __manager serve`: works the queue until it is empty. One manager at a time.
pub(crate) fn serve(context: &Context) -> CommandResult<ExitCode> {
    let layout = Layout::of(context);
    for dir in [layout.working(), layout.rejected()] {
        ensure_private_dir(&dir, 0o700).map_err(io_at(&dir))?;
    }
    let _one_at_a_time = FileLock::acquire(&layout.lock()).map_err(io_at(&layout.lock()))?;
    prune_results(&layout);
    // A request left claimed was being performed by a manager that died: it is reported as
    // failed, never silently performed twice.
    for path in entries(&layout.working())? {
        let outcome = Outcome {
            request_id: request_id_of(&path),
            state: "failed".into(),
            error: Some(
                "the manager stopped while performing this request; see km list and km doctor"
                    .into(),
            ),
        };
        finish(&layout, &path, &outcome)?;
    }
    loop {
        let pending = entries(&layout.queue())?;
        if pending.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        for queued in pending {
            let Some(name) = queued.file_name() else {
                continue;
            };
            let claimed = layout.working().join(name);
            // The claim: once renamed, the CLI can no longer withdraw it.
            match std::fs::rename(&queued, &claimed) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&queued)(e)),
            }
            let outcome = perform(context, &claimed);
            finish(&layout, &claimed, &outcome)?;
        }
    }
}

/// The `*.json` entries of `dir`, sorted (oldest request first: IDs carry the time).
fn entries(dir: &Path) -> CommandResult<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_at(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    found.sort();
    Ok(found)
}

fn request_id_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `outcome` and clears the claimed request: a regular file is removed, anything else
/// is set aside under `rejected/` for a person to look at.
fn finish(layout: &Layout, claimed: &Path, outcome: &Outcome) -> CommandResult<()> {
    let text = serde_json::to_vec_pretty(outcome)
        .map_err(|e| CommandError::internal(format!("cannot encode a result: {e}")))?;
    let result = layout
        .results()
        .join(format!("{}.json", outcome.request_id));
    write_atomic(&result, &text, 0o600).map_err(io_at(&result))?;
    let regular = std::fs::symlink_metadata(claimed).is_ok_and(|m| m.file_type().is_file());
    let cleared = if regular {
        std::fs::remove_file(claimed)
    } else {
        let aside = layout.rejected().join(format!(
            "{}.{}",
            claimed
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        std::fs::rename(claimed, aside)
    };
    match cleared {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_at(claimed)(e)),
        _ => Ok(()),
    }
}

/// Removes results older than [`RESULT_KEEP`].
fn prune_results(layout: &Layout) {
    let Ok(found) = entries(&layout.results()) else {
        return;
    };
    for path in found {
        let old = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > RESULT_KEEP);
        if old {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Reads a claimed request without ever blocking: a FIFO opens at once with `O_NONBLOCK`, and
/// anything that is not a regular file is refused before it is read.
fn read_request(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("the request cannot be opened ({e}); it was set aside"))?;
    let kind = file
        .metadata()
        .map_err(|e| format!("the request cannot be examined: {e}"))?
        .file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&kind) {
            "a FIFO"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "the queue entry is {what}, not a request; it was set aside under rejected/"
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_REQUEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("the request cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_REQUEST_BYTES {
        return Err(format!(
            "the request is larger than {MAX_REQUEST_BYTES} bytes"
        ));
    }
    Ok(bytes)
}

/// No request km writes comes near this (a resolved profile and one key line).
const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

/// Decodes and performs one claimed request; every failure becomes its outcome.
fn perform(context: &Context, path: &Path) -> Outcome {
    let request_id = request_id_of(path);
    let failed = |error: String| {
        ui::warn(&format!("request {request_id} failed: {error}"));
        Outcome {
            request_id: request_id.clone(),
            state: "failed".into(),
            error: Some(error),
        }
    };
    let value: serde_json::Value = match read_request(path).and_then(|bytes| {
        serde_json::from_slice(&bytes).map_err(|e| format!("the request is not readable JSON: {e}"))
    }) {
        Ok(value) => value,
        Err(e) => return failed(e),
    };
    match perform_value(context, &request_id, value, None) {
        Ok(()) => Outcome {
            request_id,
            state: "done".into(),
            error: None,
        },
        Err(error) => failed(error.one_line()),
    }
}

/// Decodes a request strictly (an unknown field fails it, named) and performs it. `works_until_ms`
/// is set when the manager runs elsewhere and ends by then (a Lambda invocation).
pub(crate) fn perform_value(
    context: &Context,
    request_id: &str,
    value: serde_json::Value,
    works_until_ms: Option<u64>,
) -> CommandResult<()> {
    let kind = request_id.split('-').next().unwrap_or_default();
    match kind {
        "create" => serde_json::from_value::<CreateRequest>(value)
            .map_err(|e| CommandError::user("the create request was refused").cause(e))
            .and_then(|request| create(context, &request, works_until_ms)),
        "destroy" => serde_json::from_value::<DestroyRequest>(value)
            .map_err(|e| CommandError::user("the destroy request was refused").cause(e))
            .and_then(|request| destroy(context, &request)),
        other => Err(CommandError::user(format!(
            "unknown request kind {other:?}"
        ))),
    }
}

/// The sandboxes of create requests that are queued or being performed, here or on the AWS
/// platform's manager: their keypairs exist on this machine before their records do. An error
/// when the AWS platform's requests cannot be read.
pub(crate) fn pending_creates(context: &Context) -> Result<Vec<SandboxId>, String> {
    let mut pending = crate::platforms::aws_pending_creates(context)?;
    pending.extend(local_pending_creates(context));
    Ok(pending)
}

fn local_pending_creates(context: &Context) -> Vec<SandboxId> {
    let layout = Layout::of(context);
    [layout.queue(), layout.working()]
        .iter()
        .filter_map(|dir| entries(dir).ok())
        .flatten()
        .filter(|path| request_id_of(path).starts_with("create-"))
        .filter_map(|path| {
            let value: serde_json::Value =
                serde_json::from_slice(&read_request(&path).ok()?).ok()?;
            value.get("sandbox_id")?.as_str()?.parse().ok()
        })
        .collect()
}

fn create(
    context: &Context,
    request: &CreateRequest,
    works_until_ms: Option<u64>,
) -> CommandResult<()> {
    // The resolved profile has no `extends`: loading it re-validates it here.
    let work = tempfile::Builder::new()
        .prefix("km-manager-")
        .tempdir()
        .map_err(|e| CommandError::user("cannot make a work directory").cause(e))?;
    let file = work.path().join("profile.yaml");
    std::fs::write(&file, &request.profile).map_err(crate::error::io_at(&file))?;
    let profile = crate::ops::profile::load(&file, &SearchPath::default()).map_err(|errors| {
        errors.iter().fold(
            CommandError::user("the request's profile is not valid"),
            CommandError::cause,
        )
    })?;
    let public_line = request.vscode_ssh_pub_key.clone();
    if let Some(line) = &public_line {
        single_key_line(line).map_err(|why| {
            CommandError::user(format!("{VSCODE_KEY_FIELD} was refused")).cause(why)
        })?;
    }
    let plan = Plan {
        id: &request.sandbox_id,
        alias: request.alias.as_ref(),
        profile: &profile,
        profile_path: &request.profile_path,
    };
    let maker = Maker::Manager {
        public_line,
        works_until_ms,
    };
    make(context, &plan, &maker)?;
    // An interrupted create rolls back and still returns: only a running record is success.
    let store = platforms::open_store(context)?;
    match store.get(&request.sandbox_id) {
        Ok(Some(record)) if record.status == km_core::record::Status::Running => Ok(()),
        _ => Err(CommandError::of(
            ErrorKind::Interrupted,
            format!(
                "the create of {} was interrupted and rolled back",
                request.sandbox_id
            ),
        )),
    }
}

fn destroy(context: &Context, request: &DestroyRequest) -> CommandResult<()> {
    let sandbox = SandboxHandle::open(context, request.sandbox_id.as_str())?;
    sandbox.ensure_unlocked(request.force)?;
    crate::ops::destroy::destroy(context, &sandbox, OperatorState::None)
}
