//! `km init`: make this machine ready for the local platform.

use std::process::ExitCode;

use km_core::atomic_file::{ensure_private_dir, write_atomic};
use km_core::keys::KEYS_DIR_MODE;

use crate::cli::InitArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ui;

pub(crate) fn run(context: &Context, args: &InitArgs) -> CommandResult<ExitCode> {
    if args.aws {
        return Err(CommandError::user(format!(
            "the AWS platform (region {}) is not part of this km build",
            args.region.as_deref().unwrap_or("?")
        ))
        .hint("run `km init` for the local platform; AWS support is tracked separately"));
    }
    // Find the tools before creating anything, so a machine without sshd is left as it was.
    let tools = context.tools()?;
    let paths = &context.paths;
    ensure_private_dir(&paths.km_dir(), 0o700)?;
    ensure_private_dir(&paths.keys_dir(), KEYS_DIR_MODE)?;
    ensure_private_dir(&paths.sandboxes_dir(), 0o700)?;
    std::fs::create_dir_all(paths.profiles_dir())?;
    km_local::store::SqliteStore::open(&paths.store_file())?;
    let config = serde_json::json!({
        "platform": "local",
        "sshd": tools.sshd,
        "sftp_server": tools.sftp_server,
        "version": env!("CARGO_PKG_VERSION"),
    });
    write_atomic(
        &paths.config_file(),
        format!("{config:#}\n").as_bytes(),
        0o600,
    )?;
    ui::status(&format!(
        "✓ {} ready (local platform)",
        paths.km_dir().display()
    ));
    ui::status(&format!("✓ sshd: {}", tools.sshd.display()));
    ui::status(&format!("✓ sftp-server: {}", tools.sftp_server.display()));
    if args.sidecars {
        ui::status(
            "✓ the local platform has no management component: sandboxes run this km binary's agent, always at its version",
        );
    }
    ui::status("next: km create profiles/default.yaml --alias my-poc");
    Ok(ExitCode::SUCCESS)
}
