//! The one error type of the binary: what went wrong, why, and the exact command to run next.

use km_core::platform::PlatformError;
use km_core::record::StoreError;

/// What kind of failure, as scripts tell them apart: each has its own exit status (the table
/// is in docs/vscode.md; 2 is a usage error, from the argument parser).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// Anything else (exit 1).
    Failed,
    /// No sandbox matches what was named (exit 3).
    NotFound,
    /// The sandbox is stopped or does not answer (exit 4): `km resume` or a restart helps.
    NotRunning,
    /// The platform's credentials are missing or expired (exit 5): sign in again, retry.
    Credentials,
    /// A gate refused (exit 6): the sandbox is locked, VS Code is off for it, or this machine
    /// cannot run it the way its profile asks; the hint says what lifts the gate.
    Refused,
    /// The platform or its store could not be reached, or kept asking km to slow down
    /// (exit 7): nothing was decided, and the same command can be run again.
    Unreachable,
    /// km broke one of its own rules (exit 70, as sysexits' EX_SOFTWARE): a bug to report.
    Internal,
    /// Ctrl-C ended it (exit 130).
    Interrupted,
}

impl ErrorKind {
    /// The process exit status for this kind.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Self::Failed => 1,
            Self::NotFound => 3,
            Self::NotRunning => 4,
            Self::Credentials => 5,
            Self::Refused => 6,
            Self::Unreachable => 7,
            Self::Internal => 70,
            Self::Interrupted => crate::interrupts::INTERRUPTED_EXIT,
        }
    }
}

/// A failed command.
#[derive(Debug)]
pub(crate) struct CommandError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    pub(crate) causes: Vec<String>,
    pub(crate) hints: Vec<String>,
}

pub(crate) type CommandResult<T> = Result<T, CommandError>;

impl CommandError {
    /// A failure caused by the user's input or the sandbox's state (exit 1).
    pub(crate) fn user(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Failed, message)
    }

    /// km broke one of its own rules: says so, and how to report it.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Internal, message)
            .hint("this is a bug in km: report it with the output above and `km --version`")
    }

    /// A failure of a kind scripts tell apart by its exit status.
    pub(crate) fn of(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            causes: Vec::new(),
            hints: Vec::new(),
        }
    }

    /// Adds a `hint:` line.
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Adds a `caused by:` line.
    pub(crate) fn cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.causes.push(cause.to_string());
        self
    }

    /// The whole error on one line, for a place that keeps text (the manager's results).
    pub(crate) fn one_line(&self) -> String {
        let mut line = self.message.clone();
        for cause in &self.causes {
            line.push_str(": ");
            line.push_str(cause);
        }
        for hint in &self.hints {
            line.push_str(" (next: ");
            line.push_str(hint);
            line.push(')');
        }
        line
    }

    pub(crate) fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }
}

/// The hint for a platform or store that could not be reached.
const RUN_AGAIN: &str = "this failure changed nothing: run the same km command again (if it persists, check the network, the region and the platform's status page)";

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        let hint = match &error {
            StoreError::NotFound { .. } => Some(
                "run `km list` to see sandboxes with their IDs, aliases and numbers".to_owned(),
            ),
            StoreError::Ambiguous { .. } => {
                Some("name it by its ID (km list shows each sandbox's platform and ID)".to_owned())
            }
            StoreError::Unreachable(_) => Some(RUN_AGAIN.to_owned()),
            StoreError::AliasTaken(alias) => Some(format!(
                "pick another --alias, or free it with `km destroy {alias} --yes`"
            )),
            _ => None,
        };
        let kind = match &error {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::Credentials(_) => ErrorKind::Credentials,
            StoreError::Unreachable(_) => ErrorKind::Unreachable,
            _ => ErrorKind::Failed,
        };
        let mut out = Self::of(kind, error.to_string());
        if let Some(hint) = hint {
            out = out.hint(hint);
        }
        out
    }
}

impl From<PlatformError> for CommandError {
    fn from(error: PlatformError) -> Self {
        match &error {
            PlatformError::NotRunning(id) => Self::of(ErrorKind::NotRunning, error.to_string())
                .hint(format!("start it with `km resume {id}`")),
            PlatformError::Unresponsive { id, .. } => {
                Self::of(ErrorKind::NotRunning, error.to_string())
                    .hint(format!("restart it: km stop {id} && km resume {id}"))
                    .hint("or see what is wrong first: km doctor")
            }
            PlatformError::Credentials(_) => Self::of(ErrorKind::Credentials, error.to_string())
                .hint("sign in again (e.g. `aws sso login`, or set AWS_PROFILE), then run the same km command again"),
            PlatformError::Unsupported { fixes, .. } => fixes
                .iter()
                .fold(Self::of(ErrorKind::Refused, error.to_string()), |e, fix| {
                    e.hint(fix.clone())
                }),
            PlatformError::Unreachable(_) => {
                Self::of(ErrorKind::Unreachable, error.to_string()).hint(RUN_AGAIN)
            }
            _ => Self::user(error.to_string()),
        }
    }
}

/// The hint for a file km could not use: look at it and at its directory.
pub(crate) fn check_file_hint(path: &std::path::Path) -> String {
    format!(
        "check the file and its directory: ls -ld {} {}",
        path.display(),
        path.parent().unwrap_or(path).display()
    )
}

/// An I/O failure on `path`: the error names the file, whatever the OS said.
pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CommandError + '_ {
    move |error| CommandError::user(format!("cannot access {}", path.display())).cause(error)
}
