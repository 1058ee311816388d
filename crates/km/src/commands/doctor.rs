//! `km doctor`: checks everything km depends on and everything it left on this machine, and
//! with `--fix` repairs what is safe to repair.
//!
//! It never deletes on a guess: when the sandbox list cannot be read, `--fix` stops before
//! touching anything, because every "orphan" would then look orphaned.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use km_core::atomic_file::{TEMP_PREFIX, ensure_private_dir, remove_stale_temps};
use km_core::id::SandboxId;
use km_core::known_hosts;
use km_core::platform::{Boundary, Liveness};
use km_core::record::{SandboxRecord, SandboxStore, Status};
use km_core::ssh_config;
use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::key_rotation::{KeyFiles, Recovery, recover};
use crate::platforms;
use crate::ssh_entries;
use crate::ui;

/// One finding.
#[derive(Debug, Serialize)]
struct Finding {
    check: &'static str,
    ok: bool,
    detail: String,
    /// What `--fix` did about it, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    fixed: Option<String>,
    /// Why `--fix` could not repair it, when it tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix_failed: Option<String>,
}

/// What `--fix` did about one problem.
enum Fix {
    /// Not asked to, or nothing it may do.
    NotTried,
    /// Repaired, and how.
    Done(String),
    /// Tried and failed, and why.
    Failed(String),
}

/// Runs `action` when `fix` is on: [`Fix::Done`] with `done` on success, the error kept.
fn try_fix<E: std::fmt::Display>(
    fix: bool,
    done: &str,
    action: impl FnOnce() -> Result<(), E>,
) -> Fix {
    if !fix {
        return Fix::NotTried;
    }
    match action() {
        Ok(()) => Fix::Done(done.to_owned()),
        Err(why) => Fix::Failed(why.to_string()),
    }
}

struct Report {
    findings: Vec<Finding>,
}

impl Report {
    fn ok(&mut self, check: &'static str, detail: impl Into<String>) {
        self.findings.push(Finding {
            check,
            ok: true,
            detail: detail.into(),
            fixed: None,
            fix_failed: None,
        });
    }

    fn problem(&mut self, check: &'static str, detail: impl Into<String>, fixed: Option<String>) {
        self.findings.push(Finding {
            check,
            ok: false,
            detail: detail.into(),
            fixed,
            fix_failed: None,
        });
    }

    /// A problem, with what `--fix` did about it (and why it failed, when it did).
    fn attempted(&mut self, check: &'static str, detail: impl Into<String>, fix: Fix) {
        let (fixed, fix_failed) = match fix {
            Fix::NotTried => (None, None),
            Fix::Done(how) => (Some(how), None),
            Fix::Failed(why) => (None, Some(why)),
        };
        self.findings.push(Finding {
            check,
            ok: false,
            detail: detail.into(),
            fixed,
            fix_failed,
        });
    }
}

fn version_of(program: &str, flag: &str) -> Option<String> {
    let output = Command::new(program)
        .arg(flag)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|line| line.contains("OpenSSH"))
        .map(|line| line.trim().to_owned())
}

fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

pub(crate) fn run(context: &Context, args: &DoctorArgs) -> CommandResult<ExitCode> {
    let mut report = Report {
        findings: Vec::new(),
    };
    tools(context, &mut report);
    let listed = platforms::open_store(context).and_then(|store| Ok((store.list()?, store)));
    let (records, store) = match listed {
        Ok((records, store)) => {
            report.ok(
                "sandbox list",
                format!("{} sandbox(es) recorded", records.len()),
            );
            (Some(records), Some(store))
        }
        Err(error) => {
            report.problem(
                "sandbox list",
                format!(
                    "cannot be read: {}; nothing is called an orphan or removed while it cannot",
                    error.message
                ),
                None,
            );
            (None, None)
        }
    };
    if args.fix && records.is_none() {
        finish(&report, args)?;
        return Err(CommandError::user(
            "km doctor --fix stopped before changing anything: the sandbox list cannot be read",
        )
        .hint("fix what the sandbox list check says, then run `km doctor --fix` again"));
    }
    platform_health(context, &mut report);
    modes(context, &mut report, args.fix);
    temps(context, &mut report, args.fix);
    match crate::manager::status(context) {
        None => {}
        Some(Ok(what)) => report.ok("management component", what),
        Some(Err(why)) => report.problem("management component", why, None),
    }
    if records.is_some() {
        misplaced_records(context, &mut report, args.fix);
        remote_requests(context, &mut report, args.fix);
    }
    if let (Some(records), Some(store)) = (&records, &store) {
        ssh_config_entries(context, records, &mut report, args.fix);
        keys_and_pins(context, records, &mut report, args.fix);
        sandboxes(context, store.as_ref(), records, &mut report, args.fix);
    }
    finish(&report, args)?;
    let open = report
        .findings
        .iter()
        .filter(|f| !f.ok && f.fixed.is_none())
        .count();
    if open == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    Err(
        CommandError::user(format!("km doctor found {open} problem(s)")).hint(if args.fix {
            "the ✗ lines without a fix need a hand; each says what is wrong".to_owned()
        } else {
            "run `km doctor --fix` to repair what is safe to repair".to_owned()
        }),
    )
}

fn finish(report: &Report, args: &DoctorArgs) -> CommandResult<()> {
    if args.json {
        ui::data(&serde_json::to_string_pretty(&report.findings).unwrap_or_default());
        return Ok(());
    }
    for f in &report.findings {
        let mark = match (f.ok, &f.fixed) {
            (true, _) => "✓",
            (false, Some(_)) => "✓ fixed",
            (false, None) => "✗",
        };
        let fixed = match (&f.fixed, &f.fix_failed) {
            (Some(how), _) => format!(" → {how}"),
            (None, Some(why)) => format!(" → --fix could not: {why}"),
            (None, None) => String::new(),
        };
        ui::data(&format!(
            "{mark} {}: {}{fixed}",
            f.check,
            ui::printable(&f.detail)
        ));
    }
    Ok(())
}

fn tools(context: &Context, report: &mut Report) {
    match version_of("ssh", "-V") {
        Some(version) => report.ok("ssh", version),
        None => report.problem(
            "ssh",
            "OpenSSH's client is not on PATH; install openssh-client",
            None,
        ),
    }
    match context.tools() {
        Ok(tools) => report.ok(
            "sshd",
            format!(
                "{} ({})",
                tools.sshd.display(),
                version_of(&tools.sshd.display().to_string(), "-V")
                    .unwrap_or_else(|| "version unknown".into())
            ),
        ),
        Err(e) => report.problem(
            "sshd",
            format!("{} (needed only to boot local sandboxes)", e.message),
            None,
        ),
    }
}

/// What each platform this machine uses needs here (the local one: bubblewrap and user
/// namespaces; AWS, after `km init --aws`: the CLI and its session plugin). A platform that
/// does not open (AWS never set up, or not in this build) has nothing to check.
fn platform_health(context: &Context, report: &mut Report) {
    for provider in platforms::PROVIDERS {
        let Ok(platform) = platforms::platform_for_substrate(context, provider.substrate) else {
            continue;
        };
        for check in platform.doctor() {
            match check.outcome {
                Ok(found) => report.ok(check.name, found),
                Err(wrong) => report.problem(check.name, wrong, None),
            }
        }
    }
}

fn modes(context: &Context, report: &mut Report, fix: bool) {
    for dir in [context.paths.km_dir(), context.paths.keys_dir()] {
        match mode_of(&dir) {
            Some(0o700) | None => {}
            Some(mode) => {
                let fixed = try_fix(fix, "set to 0700", || ensure_private_dir(&dir, 0o700));
                report.attempted(
                    "modes",
                    format!("{} is {mode:o}, not 700", dir.display()),
                    fixed,
                );
            }
        }
    }
    let Ok(entries) = std::fs::read_dir(context.paths.keys_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_private_key_name(&name) {
            continue;
        }
        if let Some(mode) = mode_of(&path).filter(|m| *m & 0o077 != 0) {
            let fixed = try_fix(fix, "set to 0600", || {
                std::fs::set_permissions(&path, PermissionsExt::from_mode(0o600))
            });
            report.attempted(
                "modes",
                format!(
                    "private key {} is {mode:o}: others can read it, and ssh refuses it",
                    path.display()
                ),
                fixed,
            );
        }
    }
}

/// Whether `name` in `~/.km/keys` is a private key km wrote (`<id>` or a pending `<id>.new`):
/// anything else there is not km's to judge or chmod.
fn is_private_key_name(name: &str) -> bool {
    let id = name.strip_suffix(".new").unwrap_or(name);
    id.parse::<SandboxId>().is_ok()
}

fn temps(context: &Context, report: &mut Report, fix: bool) {
    let dirs: Vec<PathBuf> = [
        Some(context.paths.km_dir()),
        Some(context.paths.keys_dir()),
        context.paths.ssh_config().parent().map(Path::to_path_buf),
    ]
    .into_iter()
    .flatten()
    .collect();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let strays: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(TEMP_PREFIX))
            .collect();
        if strays.is_empty() {
            continue;
        }
        let removed = if fix {
            remove_stale_temps(&dir).len()
        } else {
            0
        };
        let detail = format!(
            "{} in {}: {}",
            strays.len(),
            dir.display(),
            strays.join(", ")
        );
        match (fix, removed) {
            (true, 0) => report.ok(
                "temp files",
                format!("{detail} (their writers still run: left alone)"),
            ),
            (true, n) if n < strays.len() => report.problem(
                "temp files",
                detail,
                Some(format!(
                    "removed {n}; the other {} belong to a km that still runs",
                    strays.len() - n
                )),
            ),
            (true, n) => report.problem(
                "temp files",
                detail,
                Some(format!("removed {n} whose writer is gone")),
            ),
            (false, _) => report.problem("temp files", detail, None),
        }
    }
}

fn alias_id(alias: &str) -> Option<SandboxId> {
    alias.strip_prefix("km-")?.parse().ok()
}

fn ssh_config_entries(
    context: &Context,
    records: &[SandboxRecord],
    report: &mut Report,
    fix: bool,
) {
    let path = context.paths.ssh_config();
    let Ok(text) = std::fs::read_to_string(&path) else {
        report.ok(
            "ssh config",
            format!("{} has no km entries", path.display()),
        );
        return;
    };
    let entries = match ssh_config::parse_entries(&text) {
        Ok(entries) => entries,
        Err(e) => {
            report.problem(
                "ssh config markers",
                format!(
                    "{e}; km edits nothing in {} until they are fixed",
                    path.display()
                ),
                None,
            );
            return;
        }
    };
    report.ok(
        "ssh config markers",
        format!("{} managed entr(y/ies)", entries.len()),
    );
    let known: BTreeSet<&SandboxId> = records.iter().map(|r| &r.id).collect();
    for entry in &entries {
        let Some(id) = alias_id(&entry.alias).filter(|id| known.contains(id)) else {
            let fixed = match alias_id(&entry.alias) {
                Some(id) => try_fix(fix, "entry removed", || {
                    ssh_entries::remove_host(context, &id).map_err(|e| e.one_line())
                }),
                // Not an ID km makes: a person wrote it inside the markers.
                None => Fix::NotTried,
            };
            report.attempted(
                "orphan ssh config entry",
                format!("Host {} names no recorded sandbox", entry.alias),
                fixed,
            );
            continue;
        };
        effective_values(context, &id, &entry.lines, report);
    }
}

/// Compares what `ssh -G` resolves for the host with what km wrote, so an earlier `Host *`,
/// `Match` or `Include` that overrides km's values is found before VS Code trips on it.
fn effective_values(context: &Context, id: &SandboxId, lines: &[String], report: &mut Report) {
    let config = context.paths.ssh_config();
    let Ok(output) = Command::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(&config)
        .arg(id.host_alias())
        .stdin(Stdio::null())
        .output()
    else {
        return;
    };
    let resolved = String::from_utf8_lossy(&output.stdout).to_lowercase();
    let mut overridden = Vec::new();
    for line in lines.iter().skip(1) {
        let Some((key, value)) = line.trim().split_once(char::is_whitespace) else {
            continue;
        };
        let key = key.to_lowercase();
        if ![
            "hostname",
            "port",
            "user",
            "identitiesonly",
            "stricthostkeychecking",
            "hostkeyalias",
        ]
        .contains(&key.as_str())
        {
            continue;
        }
        let want = openssh_meaning(value.trim().trim_matches('"'));
        let got = resolved
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .map(openssh_meaning);
        if got.as_deref() != Some(want.as_str()) {
            overridden.push(format!(
                "{key}: km wrote {}, ssh uses {}",
                value.trim(),
                got.as_deref().unwrap_or("nothing")
            ));
        }
    }
    if overridden.is_empty() {
        report.ok(
            "ssh -G",
            format!("{} resolves to km's values", id.host_alias()),
        );
    } else {
        report.problem(
            "ssh -G",
            format!(
                "{}: {} (an earlier Host, Match or Include in {} sets these first; move it below km's block)",
                id.host_alias(),
                overridden.join("; "),
                config.display()
            ),
            None,
        );
    }
}

/// What an OpenSSH option value means, whatever its spelling: `ssh -G` prints some `yes`
/// values as `true` (StrictHostKeyChecking, OpenSSH 9.2) and keywords in any case.
fn openssh_meaning(value: &str) -> String {
    let value = value.trim().to_lowercase();
    match value.as_str() {
        "yes" | "true" => "yes".to_owned(),
        "no" | "false" | "off" => "no".to_owned(),
        _ => value,
    }
}

/// Local sandboxes an older km recorded in the team's shared table: there teammates saw them
/// (as stopped) and could destroy their records. This machine's own are moved to its records;
/// another machine's are only named (hidden here; their owner's doctor moves them).
fn misplaced_records(context: &Context, report: &mut Report, fix: bool) {
    let Ok(Some(shared)) = crate::platforms::shared_store(context) else {
        return;
    };
    let Ok(all) = shared.list() else {
        return;
    };
    for record in all
        .iter()
        .filter(|r| crate::platforms::is_machine_local(&r.platform))
    {
        let id = &record.id;
        if !context.paths.sandbox_dir(id).exists() {
            report.ok(
                "local sandbox in the team's table",
                format!(
                    "{id} is another machine's local sandbox recorded in the team's table by an older km; it is hidden here, and its owner's km doctor --fix moves it"
                ),
            );
            continue;
        }
        let fixed = match fix.then(|| move_to_local(context, shared.as_ref(), record)) {
            Some(Ok(())) => Some("moved to this machine's own records".to_owned()),
            Some(Err(e)) => {
                report.problem(
                    "local sandbox in the team's table",
                    format!(
                        "{id} could not be moved to this machine's records: {}",
                        e.one_line()
                    ),
                    None,
                );
                continue;
            }
            None => None,
        };
        report.problem(
            "local sandbox in the team's table",
            format!(
                "{id} runs on this machine but is recorded in the team's table, where teammates see it and could remove its record"
            ),
            fixed,
        );
    }
}

fn move_to_local(
    context: &Context,
    shared: &dyn SandboxStore,
    record: &SandboxRecord,
) -> CommandResult<()> {
    let local = crate::platforms::local_store(context)?;
    let new = km_core::record::NewSandbox {
        id: record.id.clone(),
        alias: record.alias.clone(),
        profile: record.profile.clone(),
        profile_path: record.profile_path.clone(),
        platform: record.platform.clone(),
        vscode_enabled: record.vscode_enabled,
        created_at: record.created_at,
    };
    if local.get(&record.id)?.is_none() {
        local.insert(&new)?;
    }
    local.set_status(&record.id, record.status)?;
    local.set_key_fingerprint(&record.id, record.key_fingerprint.as_deref())?;
    local.set_resources(&record.id, &record.resources)?;
    if record.locked {
        let holder = record
            .lock_holder
            .clone()
            .unwrap_or(km_core::record::LockHolder {
                by: "an older km".to_owned(),
                since: record.created_at,
            });
        local.set_locked(&record.id, Some(&holder))?;
    }
    // Only once the local copy is whole does the shared one go.
    shared.delete(&record.id)?;
    Ok(())
}

/// Requests to a shared platform's manager that waited too long or were left behind.
fn remote_requests(context: &Context, report: &mut Report, fix: bool) {
    match crate::manager::stale_requests(context, fix) {
        Ok(stale) => {
            for request in stale {
                let fix = match request.fixed {
                    None => Fix::NotTried,
                    Some(Ok(how)) => Fix::Done(how),
                    Some(Err(why)) => Fix::Failed(why),
                };
                report.attempted("remote request", request.detail, fix);
            }
        }
        Err(why) => report.problem("remote requests", format!("cannot be read: {why}"), None),
    }
}

fn keys_and_pins(context: &Context, records: &[SandboxRecord], report: &mut Report, fix: bool) {
    // A `create --remote` makes its keypair before the manager makes the record: a queued or
    // running request's key is not an orphan.
    let pending = match crate::manager::pending_creates(context) {
        Ok(pending) => pending,
        Err(why) => {
            report.problem(
                "key files",
                format!("not checked for orphans: the management component's requests cannot be read ({why})"),
                None,
            );
            return;
        }
    };
    let known: BTreeSet<String> = records
        .iter()
        .map(|r| r.id.clone())
        .chain(pending)
        .map(|id| id.to_string())
        .collect();
    if let Ok(entries) = std::fs::read_dir(context.paths.keys_dir()) {
        let mut orphans = BTreeSet::new();
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let id = name.split('.').next().unwrap_or_default().to_owned();
            if id.parse::<SandboxId>().is_ok() && !known.contains(&id) {
                orphans.insert(id);
            }
        }
        for id in orphans {
            let fixed = try_fix(fix, "key files removed", || remove_key_files(context, &id));
            report.attempted(
                "orphan keys",
                format!("~/.km/keys/{id}* belong to no recorded sandbox"),
                fixed,
            );
        }
    }
    let pins = std::fs::read(context.paths.known_hosts()).unwrap_or_default();
    for host in known_hosts::hosts(&pins) {
        let Some(id) = alias_id(&host) else { continue };
        if known.contains(id.as_str()) {
            continue;
        }
        let fixed = try_fix(fix, "pin removed", || {
            ssh_entries::unpin_host_key(context, &id).map_err(|e| e.one_line())
        });
        report.attempted(
            "orphan host key pin",
            format!("{host} in ~/.km/known_hosts names no recorded sandbox"),
            fixed,
        );
    }
    for record in records.iter().filter(|r| r.vscode_enabled) {
        if !context.paths.private_key(&record.id).exists() {
            report.problem(
                "missing key",
                format!(
                    "sandbox {} has no key on this machine; bootstrap one: km vscode rekey {}",
                    record.id, record.id
                ),
                None,
            );
        }
    }
}

fn remove_key_files(context: &Context, id: &str) -> std::io::Result<()> {
    let id: SandboxId = id.parse().map_err(std::io::Error::other)?;
    let files = KeyFiles::of(context, &id);
    for path in [
        files.private,
        files.public,
        files.private_new,
        files.public_new,
        context.paths.rekey_lock(&id),
    ] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn sandboxes(
    context: &Context,
    store: &dyn SandboxStore,
    records: &[SandboxRecord],
    report: &mut Report,
    fix: bool,
) {
    let known: BTreeSet<String> = records.iter().map(|r| r.id.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(context.paths.sandboxes_dir()) {
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.parse::<SandboxId>().is_ok() && !known.contains(&name) {
                report.problem(
                    "orphan sandbox directory",
                    format!(
                        "{} belongs to no recorded sandbox (its processes may still run); look inside, then remove it by hand",
                        entry.path().display()
                    ),
                    None,
                );
            }
        }
    }
    // Each platform is asked once about all of its sandboxes (one EC2 call per region).
    let mut by_platform: BTreeMap<&str, Vec<&SandboxRecord>> = BTreeMap::new();
    for record in records {
        by_platform
            .entry(record.platform.as_str())
            .or_default()
            .push(record);
    }
    let mut liveness: BTreeMap<&str, Result<Liveness, String>> = BTreeMap::new();
    for group in by_platform.values() {
        let Ok(platform) = platforms::platform_for(context, group[0]) else {
            continue;
        };
        match platform.states(group) {
            Ok(states) => {
                for (record, state) in group.iter().zip(states) {
                    liveness.insert(record.id.as_str(), Ok(state));
                }
            }
            Err(error) => {
                for record in group {
                    liveness.insert(record.id.as_str(), Err(error.to_string()));
                }
            }
        }
    }
    for record in records {
        let Ok(platform) = platforms::platform_for(context, record) else {
            report.problem(
                "platform",
                format!(
                    "sandbox {} runs on {}, which this km cannot reach",
                    record.id, record.platform
                ),
                None,
            );
            continue;
        };
        if platform.boundary(record) == Boundary::None {
            report.ok(
                "isolation",
                format!(
                    "{} is not isolated: it runs with your own access (`isolation: none`, or made by an older km); recreate it to isolate it",
                    record.id
                ),
            );
        }
        match liveness.get(record.id.as_str()) {
            Some(Ok(Liveness::Stopped)) if record.status == Status::Running => report.problem(
                "sandbox",
                format!(
                    "{} is recorded running but does not answer; km resume {}",
                    record.id, record.id
                ),
                None,
            ),
            Some(Ok(Liveness::Gone))
                if matches!(record.status, Status::Running | Status::Stopped) =>
            {
                report.problem(
                    "sandbox",
                    format!(
                        "{} is recorded, but its {} platform no longer has it; forget it with: km destroy {} --yes --force",
                        record.id, record.platform, record.id
                    ),
                    None,
                );
            }
            Some(Err(error)) => report.problem(
                "sandbox",
                format!("cannot ask whether {} runs: {error}", record.id),
                None,
            ),
            _ => {}
        }
        let files = KeyFiles::of(context, &record.id);
        if files.private_new.exists() || files.public_new.exists() {
            let fixed = match fix {
                true => match recover(context, store, platform.as_ref(), record) {
                    Ok(Recovery::Finished) => {
                        Fix::Done("finished: the sandbox had the new key".into())
                    }
                    Ok(Recovery::Undone) => Fix::Done("undone: the sandbox had the old key".into()),
                    Ok(Recovery::NothingPending) => Fix::Done("settled meanwhile".into()),
                    Ok(Recovery::Undecided) => Fix::Failed(format!(
                        "the sandbox accepted neither key just now; once it runs: km vscode rekey {}",
                        record.id
                    )),
                    Err(e) => Fix::Failed(e.one_line()),
                },
                false => Fix::NotTried,
            };
            report.attempted(
                "half-done rekey",
                format!(
                    "{} has a pending key (.new); the next km command settles it",
                    record.id
                ),
                fixed,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{is_private_key_name, openssh_meaning};

    #[test]
    fn only_km_key_names_are_private_keys() {
        assert!(is_private_key_name("sb-0123abcd"));
        assert!(is_private_key_name("sb-0123abcd.new"));
        for other in [
            "README.txt",
            "sb-0123abcd.pub",
            "sb-0123abcd.rekey.lock",
            "notes",
        ] {
            assert!(!is_private_key_name(other), "{other}");
        }
    }

    #[test]
    fn yes_and_true_mean_the_same_and_other_values_keep_theirs() {
        assert_eq!(openssh_meaning("yes"), openssh_meaning("true"));
        assert_eq!(openssh_meaning("No"), openssh_meaning("false"));
        assert_ne!(openssh_meaning("yes"), openssh_meaning("no"));
        assert_eq!(openssh_meaning("accept-new"), "accept-new");
        assert_eq!(openssh_meaning("Km-SB-0123abcd"), "km-sb-0123abcd");
    }
}
