//! `km vscode open`: desktop VS Code (or another Remote-SSH editor) on the sandbox, in one step.
//!
//! The Host entry is made sure of first: one that works is kept (a port-mode entry while its
//! tunnel answers); otherwise a proxy-mode entry is written, which needs no tunnel. Then the
//! editor is started on `vscode-remote://ssh-remote+km-<id><folder>`.

use std::net::TcpStream;
use std::process::{Command, ExitCode, Stdio};

use crate::cli::VscodeOpenArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ops::sandbox_handle::SandboxHandle;
use crate::ssh_entries::{self, Transport, entry_transport};
use crate::ui;

use super::{ready_for_ssh, require_enabled};

pub(crate) fn run(context: &Context, args: &VscodeOpenArgs) -> CommandResult<ExitCode> {
    let sandbox = SandboxHandle::open(context, &args.sandbox)?;
    let (store, record) = (&sandbox.store, &sandbox.record);
    require_enabled(record)?;
    let id = &record.id;
    let platform = sandbox.platform()?;
    ready_for_ssh(context, store.as_ref(), platform, record)?;
    super::server::place_before_connecting(
        context,
        platform,
        record,
        args.place_server,
        &args.editor,
    )?;
    let usable = match entry_transport(context, id) {
        Some(Transport::Port(port)) => TcpStream::connect(("127.0.0.1", port)).is_ok(),
        Some(Transport::Proxy { .. }) => true,
        None => false,
    };
    if !usable {
        let transport = Transport::Proxy {
            fdpass: platform.streams_outlive_the_caller(),
        };
        let entry = ssh_entries::host_entry(context, id, transport, &platform.login_user(record))?;
        ssh_entries::upsert_host(context, &entry)?;
        ui::status(&format!(
            "✓ Updated ~/.ssh/config (Host: {}, proxy mode: no tunnel needed)",
            id.host_alias()
        ));
    }
    let folder = args
        .folder
        .clone()
        .unwrap_or_else(|| platform.workspace_path(record));
    let folder = if folder.starts_with('/') {
        folder
    } else {
        format!("/{folder}")
    };
    let uri = format!(
        "vscode-remote://ssh-remote+{}{}",
        id.host_alias(),
        percent_encode_path(&folder)
    );
    let launched = Command::new(&args.editor)
        .arg("--folder-uri")
        .arg(&uri)
        .stdin(Stdio::null())
        .status();
    match launched {
        Ok(status) if status.success() => {
            ui::status(&format!("✓ Opened {uri} in {}", args.editor));
            Ok(ExitCode::SUCCESS)
        }
        Ok(status) => Err(CommandError::user(format!(
            "{} exited with {status} when asked to open {uri}",
            args.editor
        ))
        .hint(format!(
            "open it by hand: {} --folder-uri '{uri}'",
            args.editor
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ui::data(&uri);
            ui::status(&format!(
                "`{}` is not on PATH. In VS Code: F1 → \"Remote-SSH: Connect to Host…\" → {}, then open {folder}; or run `code --folder-uri '{uri}'` where VS Code's `code` command is installed (F1 → \"Shell Command: Install 'code' command in PATH\").",
                args.editor,
                id.host_alias()
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(CommandError::user(format!("cannot start {}", args.editor)).cause(e)),
    }
}

/// `path` as a URI path: bytes outside RFC 3986's unreserved set (and `/`) as `%XX`.
fn percent_encode_path(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_encoded_for_the_uri() {
        assert_eq!(
            percent_encode_path("/tmp/km home/ws#1"),
            "/tmp/km%20home/ws%231"
        );
        assert_eq!(
            percent_encode_path("/home/sandbox/workspace"),
            "/home/sandbox/workspace"
        );
    }
}
