//! `km vscode server`: puts the VS Code server into a sandbox that cannot download it, over km's
//! own channel (ssh through `km proxy`), matched to the operator's editor. The tarball comes
//! from this machine (`--from`, or km's cache); nothing is downloaded inside the sandbox.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use km_core::platform::{Boundary, Platform};
use km_core::record::SandboxRecord;
use km_core::userdata::shell_quote;
use km_core::vscode_server::{
    Arch, Commit, Refusal, download_url, parse_survey, place_script, survey_script, tarball_name,
};

use crate::cli::VscodeServerArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult, io_at};
use crate::ops::sandbox_handle::SandboxHandle;
use crate::ssh_client::ssh_command;
use crate::ui;

use super::{ready_for_ssh, require_enabled};

/// Unpacked, a server takes about three times its tarball; placed in both layouts, twice that.
const SPACE_PER_TARBALL_BYTE: u64 = 7;

/// Which server to place, and from where.
pub(crate) struct Wanted {
    pub(crate) commit: Option<Commit>,
    pub(crate) from: Option<PathBuf>,
    pub(crate) arch: Option<Arch>,
    pub(crate) editor: String,
}

impl Wanted {
    /// The server matching `editor`, from km's cache.
    pub(crate) fn of_editor(editor: &str) -> Self {
        Self {
            commit: None,
            from: None,
            arch: None,
            editor: editor.to_owned(),
        }
    }
}

pub(crate) fn run(context: &Context, args: &VscodeServerArgs) -> CommandResult<ExitCode> {
    let sandbox = SandboxHandle::open(context, &args.sandbox)?;
    let (store, record) = (&sandbox.store, &sandbox.record);
    require_enabled(record)?;
    let platform = sandbox.platform()?;
    ready_for_ssh(context, store.as_ref(), platform, record)?;
    let wanted = Wanted {
        commit: args.commit.clone(),
        from: args.from.clone(),
        arch: args.arch,
        editor: args.editor.clone(),
    };
    place(context, platform, record, &wanted)?;
    Ok(ExitCode::SUCCESS)
}

/// The commit of the operator's editor: the second line of `<editor> --version`.
fn editor_commit(editor: &str) -> CommandResult<Commit> {
    let output = Command::new(editor)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            CommandError::user(format!("cannot run `{editor} --version` to learn its commit"))
                .cause(e)
                .hint("name the commit: km vscode server <sb> --commit <40 hex digits> (Help → About in VS Code)")
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .nth(1)
        .unwrap_or_default()
        .parse()
        .map_err(|why: String| {
            CommandError::user(format!("`{editor} --version` did not name a commit"))
                .cause(why)
                .hint("name the commit: km vscode server <sb> --commit <40 hex digits>")
        })
}

/// The ssh command that runs `script` in the sandbox.
fn ssh_to(
    context: &Context,
    platform: &dyn Platform,
    record: &SandboxRecord,
    script: &str,
) -> CommandResult<Command> {
    let id = &record.id;
    let mut ssh = ssh_command(
        context,
        id,
        &context.paths.private_key(id),
        &platform.login_user(record),
    )
    .map_err(|e| CommandError::user(format!("cannot build the ssh command for {id}")).cause(e))?;
    ssh.args(["-T", "-o", "BatchMode=yes"])
        .arg(id.host_alias())
        .arg(format!("sh -c {}", shell_quote(script)));
    Ok(ssh)
}

/// Runs `script` in the sandbox over ssh, with nothing on its stdin.
fn over_ssh(
    context: &Context,
    platform: &dyn Platform,
    record: &SandboxRecord,
    script: &str,
) -> CommandResult<std::process::Output> {
    ssh_to(context, platform, record, script)?
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CommandError::user("cannot run ssh").cause(e))
}

/// Runs `script` in the sandbox with `file` on its stdin, counting the bytes sent on
/// `progress`. A script that stops reading early (a refusal) ends the copy, not the command.
fn send(
    context: &Context,
    platform: &dyn Platform,
    record: &SandboxRecord,
    script: &str,
    mut file: File,
    progress: &ui::Progress,
) -> CommandResult<std::process::Output> {
    use std::io::{Read, Write};
    let mut child = ssh_to(context, platform, record, script)?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CommandError::user("cannot run ssh").cause(e))?;
    let mut stdin = child.stdin.take();
    let counter = progress.counter();
    // A read failure here is reported as such; a write failure only means the sandbox stopped
    // reading (a refusal), which its exit status says.
    let copier = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buffer = vec![0u8; 256 * 1024];
        while let Some(pipe) = stdin.as_mut() {
            let read = file.read(&mut buffer)?;
            if read == 0 || pipe.write_all(&buffer[..read]).is_err() {
                break;
            }
            counter.fetch_add(read as u64, std::sync::atomic::Ordering::Relaxed);
        }
        // Dropping stdin here tells the sandbox the tarball is complete.
        Ok(())
    });
    let output = child
        .wait_with_output()
        .map_err(|e| CommandError::user("lost track of ssh").cause(e))?;
    match copier.join() {
        Ok(Ok(())) => Ok(output),
        Ok(Err(e)) => Err(CommandError::user("cannot read the server tarball")
            .cause(e)
            .cause("what reached the sandbox is removed there: nothing was placed")),
        Err(_) => Err(CommandError::user("the copy of the server tarball stopped")
            .cause("what reached the sandbox is removed there: nothing was placed")),
    }
}

/// What `km vscode start` and `open` do about the server: place it when asked
/// (`--place-server`, failing as `km vscode server` does), and on their own, with a notice,
/// when the sandbox has no network to download it with; there a failure only warns, since the
/// Host entry is still worth writing for plain ssh.
pub(crate) fn place_before_connecting(
    context: &Context,
    platform: &dyn Platform,
    record: &SandboxRecord,
    asked: bool,
    editor: &str,
) -> CommandResult<()> {
    let wanted = Wanted::of_editor(editor);
    if asked {
        return place(context, platform, record, &wanted);
    }
    if platform.boundary(record) != Boundary::NamespacesOffline {
        return Ok(());
    }
    ui::status(&format!(
        "Sandbox {} has no network (`network: none`), so VS Code cannot download its server there: km places it",
        record.id
    ));
    if let Err(error) = place(context, platform, record, &wanted) {
        ui::warn(&format!(
            "the VS Code server was not placed, so Remote-SSH will stall installing it: {}",
            error.one_line()
        ));
    }
    Ok(())
}

/// Places the server `wanted` names in the sandbox, unless it is there already.
pub(crate) fn place(
    context: &Context,
    platform: &dyn Platform,
    record: &SandboxRecord,
    wanted: &Wanted,
) -> CommandResult<()> {
    let id = &record.id;
    let commit = match &wanted.commit {
        Some(commit) => commit.clone(),
        None => editor_commit(&wanted.editor)?,
    };
    let short = &commit.to_string()[..12];
    let surveyed = over_ssh(context, platform, record, &survey_script(&commit))?;
    let survey = parse_survey(&String::from_utf8_lossy(&surveyed.stdout)).ok_or_else(|| {
        CommandError::user(format!("cannot look into sandbox {id} over ssh"))
            .cause(String::from_utf8_lossy(&surveyed.stderr).trim().to_owned())
            .hint(format!("km vscode status {id}"))
    })?;
    if survey.present {
        ui::status(&format!(
            "✓ VS Code server {short} is already in place in {id}"
        ));
        return Ok(());
    }
    let arch = match wanted.arch {
        Some(arch) => arch,
        None => Arch::of_machine(&survey.machine).ok_or_else(|| {
            CommandError::user(format!(
                "sandbox {id} runs {}, for which VS Code publishes no server",
                survey.machine
            ))
        })?,
    };
    let cache = context
        .paths
        .km_dir()
        .join("cache/vscode-server")
        .join(tarball_name(&commit, arch));
    let tarball = wanted.from.clone().unwrap_or(cache.clone());
    let size = match std::fs::metadata(&tarball) {
        Ok(meta) => meta.len(),
        Err(_) if wanted.from.is_none() => {
            return Err(CommandError::user(format!(
                "no VS Code server {short} for linux-{} on this machine (looked for {})",
                arch.as_str(),
                cache.display()
            ))
            .cause("km never downloads inside the sandbox: the server comes from this machine")
            .hint(format!(
                "mkdir -p {} && curl -fL -o {} {}, then run this again (or pass --from FILE)",
                shell_quote(&cache.parent().unwrap_or(&cache).display().to_string()),
                shell_quote(&cache.display().to_string()),
                download_url(&commit, arch)
            )));
        }
        Err(e) => return Err(io_at(&tarball)(e)),
    };
    let need_kib = size * SPACE_PER_TARBALL_BYTE / 1024;
    if survey.free_kib < need_kib {
        return Err(CommandError::user(format!(
            "sandbox {id} has {} MB free in its home; placing the server needs about {} MB",
            survey.free_kib / 1024,
            need_kib / 1024
        ))
        .hint(format!(
            "free space in the sandbox (km shell {id} -- du -sh .vscode-server workspace), then run this again"
        )));
    }
    let file = File::open(&tarball).map_err(io_at(&tarball))?;
    let placed = send(
        context,
        platform,
        record,
        &place_script(&commit, arch),
        file,
        &ui::Progress::start(&format!("placing VS Code server {short} in {id}"), size),
    )?;
    let stdout = String::from_utf8_lossy(&placed.stdout);
    if placed.status.success() && stdout.lines().any(|l| l == "placed") {
        ui::status(&format!(
            "✓ VS Code server {short} (linux-{}) placed in {id}: ~/.vscode-server/bin/{commit} and ~/.vscode-server/cli/servers/Stable-{commit}/server",
            arch.as_str()
        ));
        return Ok(());
    }
    let found = stdout
        .lines()
        .find_map(|l| l.strip_prefix("found="))
        .unwrap_or("?")
        .to_owned();
    let from = tarball.display();
    let error = match placed.status.code().and_then(Refusal::of_status) {
        Some(Refusal::Unreadable) => {
            CommandError::user(format!("{from} is not a readable .tar.gz"))
        }
        Some(Refusal::NotAServer) => {
            CommandError::user(format!("{from} holds no VS Code server (no product.json)"))
        }
        Some(Refusal::OtherCommit) => {
            CommandError::user(format!("{from} is VS Code server {found}, not {commit}"))
        }
        Some(Refusal::OtherArch) => CommandError::user(format!(
            "{from} is {found}, not the linux-{} server sandbox {id} needs",
            arch.as_str()
        )),
        None => {
            return Err(
                CommandError::user(format!("placing the VS Code server in {id} failed"))
                    .cause(String::from_utf8_lossy(&placed.stderr).trim().to_owned())
                    .hint(format!("km vscode status {id}")),
            );
        }
    };
    Err(error.cause("nothing was placed").hint(format!(
        "fetch the right one: curl -fL -o {} {}",
        shell_quote(&cache.display().to_string()),
        download_url(&commit, arch)
    )))
}
