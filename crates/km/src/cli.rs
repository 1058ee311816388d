//! The command line: every command, flag and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::engine::ArgValueCandidates;

/// `km --version`: the version and which platforms this build can run sandboxes on.
#[cfg(feature = "aws")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (platforms: local, aws)");
/// `km --version`: the version and which platforms this build can run sandboxes on.
#[cfg(not(feature = "aws"))]
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (platforms: local; build with --features aws for EC2)"
);

/// km creates sandboxes from YAML profiles and opens VS Code (Remote-SSH) or plain ssh inside
/// them, over a tunnel, with an ed25519 keypair that belongs to that one sandbox.
#[derive(Debug, Parser)]
#[command(name = "km", version = VERSION, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Every `<sb>` is a sandbox ID (sb-1a2b3c4d), an alias, or the number `km list` shows.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Make this machine ready to run sandboxes (creates ~/.km and its store)
    Init(InitArgs),
    /// Print a profile with inheritance resolved, or every error in it; changes nothing
    Validate(ValidateArgs),
    /// Create a sandbox from a profile and print its ID
    ///
    /// A local sandbox runs in namespaces of its own (bubblewrap): its own user, files and
    /// processes, none of yours. `spec.runtime.network: none` also keeps it off every network
    /// but loopback; `spec.runtime.isolation: none` runs it with your own access instead.
    Create(CreateArgs),
    /// List sandboxes
    List(ListArgs),
    /// Destroy a sandbox, its keys, its ssh config entry and its pinned host key
    Destroy(DestroyArgs),
    /// Stop a sandbox's processes; its files stay
    Stop(SandboxArg),
    /// Start a stopped sandbox again (first boot is not repeated)
    Resume(SandboxArg),
    /// Protect a sandbox from destroy and rekey, recording who locked it and when
    Lock(SandboxArg),
    /// Remove the protection `km lock` set
    Unlock(SandboxArg),
    /// Run a command in a sandbox like `ssh host CMD` (or open an interactive ssh session)
    Shell(ShellArgs),
    /// VS Code Remote-SSH: write the ssh entry (tunnel or proxy mode), open the editor, check
    /// readiness, rotate the key
    #[command(subcommand)]
    Vscode(VscodeCommand),
    /// ssh ProxyCommand: connect stdin/stdout to the sandbox's sshd
    /// (`ssh -o ProxyCommand='km proxy <sb>' …`)
    Proxy(ProxyArgs),
    /// Check km's tools, files and sandboxes; --fix repairs what is safe
    Doctor(DoctorArgs),
    /// Print a shell completion script (`km completions bash > /etc/bash_completion.d/km`)
    Completions(CompletionsArgs),
    /// Print km's man page in roff (`km man | man -l -`)
    Man,
    /// The sandbox agent (started by km itself)
    #[command(name = "__agent", hide = true)]
    Agent(AgentArgs),
    /// The platform's management component (installed and started by km itself)
    #[command(name = "__manager", hide = true, subcommand)]
    Manager(ManagerCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ManagerCommand {
    /// Print what this build understands, as JSON
    Manifest,
    /// Work the request queue until it is empty
    Serve,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Install this km as the platform's management component (what `km create --remote`
    /// and `km destroy --remote` go through), with a manifest of what it understands
    #[arg(long)]
    pub(crate) sidecars: bool,
    /// Each provider's own options (`--aws …`).
    #[command(flatten)]
    pub(crate) platforms: crate::platforms::InitOptions,
    /// Your name on the keys you make (`km-<id>:<name>`), telling your key apart from other
    /// operators' on a shared sandbox (default: user@host; kept until changed)
    #[arg(long)]
    pub(crate) operator: Option<km_core::id::Operator>,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Repair what is safe: orphan entries, keys and pins, stale temp files, modes, half-done
    /// rekeys (never anything while the sandbox list cannot be read)
    #[arg(long)]
    pub(crate) fix: bool,
    /// Print the findings as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell
    pub(crate) shell: CompletionShell,
}

/// The shells km completes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The profile file
    pub(crate) profile: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The profile file
    pub(crate) profile: PathBuf,
    /// A name for the sandbox, unique among live sandboxes
    #[arg(long)]
    pub(crate) alias: Option<String>,
    /// Create through the platform's management component (`km init --sidecars` installs
    /// it); the keypair is still made here
    #[arg(long)]
    pub(crate) remote: bool,
    /// With --remote: return once the request is queued (`km list` shows its progress)
    #[arg(long, requires = "remote")]
    pub(crate) no_wait: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print a JSON array instead of a table
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DestroyArgs {
    /// The sandbox: ID, alias or list number
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
    /// Destroy through the platform's management component; this machine's keys, Host entry
    /// and pin go once it reports the sandbox gone
    #[arg(long)]
    pub(crate) remote: bool,
    /// Don't ask for confirmation
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// Destroy even when the sandbox is locked
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SandboxArg {
    /// The sandbox: ID, alias or list number
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
}

#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// The sandbox: ID, alias or list number
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
    /// Hand ssh a connected socket and exit at once (with `ProxyUseFdpass yes`): no km process
    /// stays alive for the connection
    #[arg(long)]
    pub(crate) fdpass: bool,
    /// Used by km's own verification logins while it settles a key rotation: connect without
    /// waiting for the rotation lock
    #[arg(long, hide = true)]
    pub(crate) settling: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ShellArgs {
    /// The sandbox: ID, alias or list number
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
    /// The command to run; without one, an interactive ssh session opens
    #[arg(last = true)]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum VscodeCommand {
    /// Write the ssh config entry and forward 127.0.0.1:<port> to the sandbox's sshd until Ctrl-C
    /// (or, with --proxy, write a ProxyCommand entry and return)
    Start(VscodeStartArgs),
    /// Check that VS Code can connect: sshd, authorized_keys, key match, host key, real login
    Status(VscodeStatusArgs),
    /// Rotate the sandbox's keypair without destroying it
    Rekey(VscodeRekeyArgs),
    /// Open desktop VS Code on the sandbox's workspace (writing a proxy-mode entry if needed)
    Open(VscodeOpenArgs),
    /// List the keys installed in the sandbox, with their operators and which is this machine's
    Keys(VscodeKeysArgs),
    /// Remove every line of one key (by SHA256 fingerprint or operator name) and end this
    /// sandbox's sessions that used it
    Revoke(VscodeRevokeArgs),
    /// Put the VS Code server matching your editor into the sandbox over km's channel, for
    /// sandboxes that cannot download it (from --from FILE or ~/.km/cache/vscode-server/)
    Server(VscodeServerArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VscodeServerArgs {
    /// The sandbox: ID, alias or list number
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
    /// The VS Code commit (default: the second line of `<editor> --version`)
    #[arg(long)]
    pub(crate) commit: Option<km_core::vscode_server::Commit>,
    /// The server tarball (default: ~/.km/cache/vscode-server/vscode-server-linux-<arch>-<commit>.tar.gz)
    #[arg(long, value_name = "FILE")]
    pub(crate) from: Option<std::path::PathBuf>,
    /// The server's architecture, x64 or arm64 (default: the sandbox's)
    #[arg(long)]
    pub(crate) arch: Option<km_core::vscode_server::Arch>,
    /// The editor whose commit to match
    #[arg(long, default_value = "code")]
    pub(crate) editor: String,
}

#[derive(Debug, Args)]
pub(crate) struct VscodeKeysArgs {
    /// The sandbox: ID, alias or list number
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
    /// Print the keys as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VscodeRevokeArgs {
    /// The sandbox: ID, alias or list number
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
    /// The key: its fingerprint (`SHA256:…`, as `km vscode keys` shows it) or its operator
    pub(crate) key: String,
    /// Do not ask for confirmation
    #[arg(long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VscodeStartArgs {
    /// The sandbox: ID, alias or list number
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
    /// The local port VS Code connects to (0: any free port; the entry names the one chosen)
    #[arg(long, default_value_t = 2222)]
    pub(crate) local_port: u16,
    /// Write a ProxyCommand entry instead of forwarding a port, and return at once: no
    /// terminal stays open, no port can collide, and each connection starts km only briefly
    #[arg(long, conflicts_with = "local_port")]
    pub(crate) proxy: bool,
    /// First put the VS Code server matching `code --version` into the sandbox over km's
    /// channel (for sandboxes without internet; see `km vscode server`)
    #[arg(long)]
    pub(crate) place_server: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VscodeOpenArgs {
    /// The sandbox: ID, alias or list number
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
    /// The folder to open, as a path inside the sandbox (default: its workspace)
    #[arg(long)]
    pub(crate) folder: Option<String>,
    /// The editor to launch: `code`, or another Remote-SSH-capable one on PATH
    #[arg(long, default_value = "code")]
    pub(crate) editor: String,
    /// First put the VS Code server matching the editor into the sandbox over km's channel
    /// (for sandboxes without internet; see `km vscode server`)
    #[arg(long)]
    pub(crate) place_server: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VscodeStatusArgs {
    /// The sandbox: ID, alias or list number
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
    /// Print the checks as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VscodeRekeyArgs {
    /// The sandbox: ID, alias or list number
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
    /// Rekey even when the sandbox is locked
    #[arg(long)]
    pub(crate) force: bool,
    /// Don't ask for confirmation
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// The sandbox this agent serves (shown by `ps`)
    #[arg(add = ArgValueCandidates::new(crate::sandbox_candidates::sandbox_candidates))]
    pub(crate) sandbox: String,
    /// The sandbox directory
    #[arg(long)]
    pub(crate) dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
