//! `km vscode status`: one line per readiness check, non-zero when any fails.

use std::process::ExitCode;

use km_core::keys::{fingerprint_of_file, fingerprint_of_line, key_material};
use km_core::platform::{Boundary, Liveness};
use serde::Serialize;

use crate::cli::VscodeStatusArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::key_rotation::settle;
use crate::ops::sandbox_handle::SandboxHandle;
use crate::ssh_client::verify_login;
use crate::ssh_entries::{Transport, entry_transport, pinned_host_key};
use crate::ui;

use super::{MachineKey, probe, require_enabled};

const HOST_KEY_CHECK: &str = "host key matches pin";
const ENTRY_CHECK: &str = "ssh config entry";

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        detail: detail.into(),
    }
}

pub(crate) fn run(context: &Context, args: &VscodeStatusArgs) -> CommandResult<ExitCode> {
    let sandbox = SandboxHandle::open(context, &args.sandbox)?;
    let (store, record) = (&sandbox.store, &sandbox.record);
    require_enabled(record)?;
    let id = &record.id;
    let platform = sandbox.platform()?;
    let mut checks = Vec::new();
    let running = platform.liveness(record)? == Liveness::Running;
    checks.push(check(
        "sandbox running",
        running,
        if running {
            "the agent answers"
        } else {
            "the agent does not answer"
        },
    ));
    if running {
        settle(context, store.as_ref(), platform, record)?;
        let found = probe(platform, record)?;
        checks.push(check(
            "sshd available",
            found.sshd_active,
            if found.sshd_active {
                "sshd accepts its config".to_owned()
            } else {
                // A restart starts the sandbox's sshd on every platform.
                format!("sshd is not serving; restart the sandbox: km stop {id} && km resume {id}")
            },
        ));
        let mine = MachineKey::of(context, id)?;
        let installed = mine.installed(&found).map(str::to_owned);
        checks.push(check(
            "authorized_keys present",
            found.authorized_keys.is_some() && installed.is_some(),
            match (&found.authorized_keys, &installed) {
                (None, _) => "~/.ssh/authorized_keys is absent".to_owned(),
                (Some(_), None) => {
                    format!("no line for {} in ~/.ssh/authorized_keys", mine.comment)
                }
                (Some(lines), Some(_)) => {
                    format!("{} key line(s), one for {}", lines.len(), mine.comment)
                }
            },
        ));
        let local = fingerprint_of_file(&context.paths.public_key(id)).ok();
        let remote = installed
            .as_deref()
            .and_then(|l| fingerprint_of_line(l).ok());
        checks.push(match (&local, &remote) {
            (Some(l), Some(r)) if l == r => {
                check("installed key matches local key", true, l.clone())
            }
            (Some(l), Some(r)) => check(
                "installed key matches local key",
                false,
                format!("local {l}, installed {r}"),
            ),
            (None, _) => check(
                "installed key matches local key",
                false,
                format!("no local key at {}", context.paths.public_key(id).display()),
            ),
            (Some(_), None) => check(
                "installed key matches local key",
                false,
                "no installed key to compare",
            ),
        });
        let pinned = pinned_host_key(context, id);
        let actual = found.host_key.as_deref().and_then(key_material);
        checks.push(match (&pinned, &actual) {
            (Some(p), Some(a)) if p == a => {
                check(HOST_KEY_CHECK, true, "pinned in ~/.km/known_hosts")
            }
            (None, _) => check(
                HOST_KEY_CHECK,
                false,
                format!("not pinned on this machine yet; km vscode start {id} pins it"),
            ),
            _ => check(
                HOST_KEY_CHECK,
                false,
                "the sandbox's host key differs from the pinned one",
            ),
        });
        let login = verify_login(
            context,
            id,
            &context.paths.private_key(id),
            &platform.login_user(record),
        );
        checks.push(match login {
            Ok(()) => check(
                "ssh login with local key",
                true,
                "handshake and login succeeded",
            ),
            Err(why) => check("ssh login with local key", false, why),
        });
    }
    // Informational: how the Host entry reaches the sandbox (never a failure by itself).
    let mode = match entry_transport(context, id) {
        Some(Transport::Port(port)) => {
            format!("port mode: 127.0.0.1:{port}, served while `km vscode start {id}` runs")
        }
        Some(Transport::Proxy { fdpass: true }) => {
            "proxy mode: ProxyCommand km proxy --fdpass, no tunnel needed".to_owned()
        }
        Some(Transport::Proxy { fdpass: false }) => {
            "proxy mode: ProxyCommand km proxy, no tunnel needed".to_owned()
        }
        None => format!("no Host entry yet: km vscode start {id} [--proxy]"),
    };
    // Said, never failed: an unisolated sandbox is a choice its profile made.
    let boundary = match platform.boundary(record) {
        Boundary::Machine => "a machine of its own".to_owned(),
        Boundary::Namespaces => "namespaces of its own on this machine".to_owned(),
        Boundary::NamespacesOffline => {
            "namespaces of its own on this machine, no network but loopback".to_owned()
        }
        Boundary::None => format!(
            "⚠ none: it runs with your own access (its profile says `isolation: none`, or an older km made it); to isolate it, recreate it: km destroy {id} --yes && km create {}",
            record.profile_path
        ),
    };
    checks.push(check("isolation", true, boundary));
    checks.push(check(ENTRY_CHECK, true, mode));
    let failed = checks.iter().filter(|c| !c.ok).count();
    if args.json {
        let report = serde_json::json!({ "sandbox": id, "ok": failed == 0, "checks": checks });
        ui::data(&serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        for c in &checks {
            ui::data(&format!(
                "{} {}: {}",
                if c.ok { "✓" } else { "✗" },
                c.name,
                c.detail
            ));
        }
    }
    if failed == 0 {
        if !args.json {
            ui::status(&format!(
                "✓ VS Code Remote-SSH ready for {}",
                id.host_alias()
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let failed_check = |name: &str| checks.iter().any(|c| !c.ok && c.name == name);
    let hint = if !running {
        format!("km resume {id}")
    } else if failed_check(HOST_KEY_CHECK) && pinned_host_key(context, id).is_none() {
        // Made by the management component (or on another machine): nothing was pinned yet.
        format!(
            "nothing is pinned for {id} on this machine yet; pin the host key read over the sandbox's own command channel with: km vscode start {id} (or km vscode rekey {id})"
        )
    } else if failed_check(HOST_KEY_CHECK) {
        // Rekey rotates the client key and never touches the pin, so it cannot fix this.
        format!(
            "the sandbox's host key is not the one km pinned when it was created; do not connect until you know why. If the sandbox was rebuilt on purpose, recreate it: km destroy {id} --yes && km create {}",
            record.profile_path
        )
    } else if checks
        .iter()
        .any(|c| !c.ok && (c.name.contains("key") || c.name.contains("login")))
    {
        format!("km vscode rekey {id}")
    } else {
        format!("km stop {id} && km resume {id}")
    };
    Err(CommandError::user(format!(
        "{failed} of {} checks failed for sandbox {id}",
        checks.len()
    ))
    .hint(hint))
}
