//! Terminal output: data on stdout, progress, ✓ lines, warnings and errors on stderr.

#![allow(clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::error::CommandError;

/// Prints data for scripts. A reader that went away (`km list | head -1`) is not an error:
/// km stops writing and exits as it would have, like other Unix tools.
pub(crate) fn data(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints a progress or success line.
pub(crate) fn status(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Prints a warning.
pub(crate) fn warn(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "warning: {}", printable(line));
}

/// `text` with every control character shown as an escape (`\u{1b}`), so text that came from a
/// file or a record can never move the cursor, recolour the terminal or forge a line.
pub(crate) fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Renders a failed command.
pub(crate) fn print_error(error: &CommandError) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {}", printable(&error.message));
    for cause in &error.causes {
        let _ = writeln!(err, "  caused by: {}", printable(cause));
    }
    for hint in &error.hints {
        let _ = writeln!(err, "hint: {}", printable(hint));
    }
}

/// Asks a yes/no question on the terminal; `None` when there is no terminal to ask on.
pub(crate) fn confirm(question: &str) -> Option<bool> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("{} [y/N] ", printable(question).replace("\\n", "\n"));
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).ok()?;
    Some(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Asks before a destructive step: `Ok(true)` to go on, `Ok(false)` when the operator said no
/// (already reported), and an error naming `yes_command` when there is no terminal to ask on.
pub(crate) fn confirm_or_refuse(
    question: &str,
    action: &str,
    yes_command: &str,
) -> Result<bool, CommandError> {
    match confirm(question) {
        Some(true) => Ok(true),
        Some(false) => {
            status("Aborted.");
            Ok(false)
        }
        None => Err(CommandError::user(format!(
            "refusing to {action} without confirmation (no terminal to ask on)"
        ))
        .hint(yes_command.to_owned())),
    }
}

/// A spinner on stderr while slow work runs; silent when stderr is not a terminal.
pub(crate) struct Spinner {
    running: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Spinner {
    pub(crate) fn start(label: &str) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let handle = std::io::stderr().is_terminal().then(|| {
            let running = Arc::clone(&running);
            let label = label.to_owned();
            thread::spawn(move || {
                let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
                let mut i = 0;
                while running.load(Ordering::Relaxed) {
                    eprint!("\r{} {label}", frames[i % frames.len()]);
                    i += 1;
                    thread::sleep(Duration::from_millis(80));
                }
                eprint!("\r\x1b[2K");
            })
        });
        Self { running, handle }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// How far a transfer of `total` bytes has come, as one line.
fn progress_line(label: &str, done: u64, total: u64) -> String {
    const MB: u64 = 1024 * 1024;
    let percent = (done * 100).checked_div(total).unwrap_or(100).min(100);
    format!(
        "{label}: {} / {} MB ({percent} %)",
        done.div_ceil(MB).min(total.div_ceil(MB)),
        total.div_ceil(MB)
    )
}

/// A progress line on stderr for a transfer of known size, fed through [`Progress::counter`];
/// silent when stderr is not a terminal.
pub(crate) struct Progress {
    done: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn start(label: &str, total: u64) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicBool::new(true));
        let handle = std::io::stderr().is_terminal().then(|| {
            let (done, running) = (Arc::clone(&done), Arc::clone(&running));
            let label = label.to_owned();
            thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    let line = progress_line(&label, done.load(Ordering::Relaxed), total);
                    eprint!("\r\x1b[2K{line}");
                    thread::sleep(Duration::from_millis(200));
                }
                eprint!("\r\x1b[2K");
            })
        });
        Self {
            done,
            running,
            handle,
        }
    }

    /// What the transfer adds its bytes to.
    pub(crate) fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.done)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_whole_megabytes_and_percent() {
        let mb = 1024 * 1024;
        assert_eq!(
            progress_line("placing", 30 * mb, 60 * mb),
            "placing: 30 / 60 MB (50 %)"
        );
        assert_eq!(progress_line("placing", 0, 0), "placing: 0 / 0 MB (100 %)");
        assert_eq!(
            progress_line("placing", 1, 3 * mb),
            "placing: 1 / 3 MB (0 %)"
        );
    }

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_kept() {
        assert_eq!(printable("plain sb-1 ✓"), "plain sb-1 ✓");
        assert_eq!(printable("a\u{1b}[31mb\nc\rd"), "a\\u{1b}[31mb\\nc\\rd");
    }
}
