//! `km init`: make this machine ready, for the local platform or (`--aws`) the AWS platform.

use std::process::ExitCode;

use km_core::atomic_file::ensure_private_dir;
use km_core::keys::KEYS_DIR_MODE;

use crate::cli::InitArgs;
use crate::context::Context;
use crate::error::{CommandResult, io_at};
use crate::ops::operator_state::name_operator;
use crate::platforms;
use crate::settings::Settings;
use crate::ui;

pub(crate) fn run(context: &Context, args: &InitArgs) -> CommandResult<ExitCode> {
    if let Some(done) = platforms::init_shared(
        context,
        &args.platforms,
        args.operator.as_ref(),
        args.sidecars,
    ) {
        return done;
    }
    // Find the tools before creating anything, so a machine without sshd is left as it was.
    let tools = context.tools()?;
    let paths = &context.paths;
    for (dir, mode) in [
        (paths.km_dir(), 0o700),
        (paths.keys_dir(), KEYS_DIR_MODE),
        (paths.sandboxes_dir(), 0o700),
        (paths.profiles_dir(), 0o700),
    ] {
        ensure_private_dir(&dir, mode).map_err(io_at(&dir))?;
    }
    platforms::local_store(context)?;
    let mut settings = Settings::load(context).unwrap_or_default();
    settings.platform = platforms::LOCAL.to_owned();
    name_operator(context, &mut settings, args.operator.as_ref());
    for (key, value) in [
        ("sshd", serde_json::json!(tools.sshd)),
        ("sftp_server", serde_json::json!(tools.sftp_server)),
        ("version", serde_json::json!(env!("CARGO_PKG_VERSION"))),
    ] {
        settings.other.insert(key.into(), value);
    }
    settings.save(context)?;
    ui::status(&format!(
        "✓ {} ready (local platform)",
        paths.km_dir().display()
    ));
    ui::status(&format!("✓ sshd: {}", tools.sshd.display()));
    ui::status(&format!("✓ sftp-server: {}", tools.sftp_server.display()));
    if args.sidecars {
        crate::manager::install(context)?;
    } else {
        crate::manager::report(context);
    }
    ui::status("next: km create profiles/default.yaml --alias my-poc");
    Ok(ExitCode::SUCCESS)
}
