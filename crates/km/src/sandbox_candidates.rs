//! The sandbox IDs and aliases offered when a shell completes a `<sb>` argument: read from the
//! store at that moment, in bounded time, never failing loudly or creating files.

use clap_complete::engine::CompletionCandidate;

use crate::context::Context;
use crate::platforms;

/// How long completion waits for the sandbox list: a TAB press must never hang on a locked
/// store or a slow network; it offers nothing instead.
const CANDIDATES_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Every sandbox's ID and alias, for completing a `<sb>` argument; nothing when km is not set
/// up or its store cannot be read (completion must never fail loudly, or create files).
pub(crate) fn sandbox_candidates() -> Vec<CompletionCandidate> {
    let (sender, receiver) = std::sync::mpsc::channel();
    // Left running if it is slow: km exits as soon as the candidates are printed.
    std::thread::spawn(move || {
        let _ = sender.send(listed_candidates());
    });
    receiver.recv_timeout(CANDIDATES_WAIT).unwrap_or_default()
}

fn listed_candidates() -> Vec<CompletionCandidate> {
    let Ok(context) = Context::from_process() else {
        return Vec::new();
    };
    if !context.paths.config_file().exists() && !context.paths.store_file().exists() {
        return Vec::new();
    }
    let Ok(store) = platforms::open_store(&context) else {
        return Vec::new();
    };
    let Ok(records) = store.list() else {
        return Vec::new();
    };
    let mut candidates = Vec::new();
    for record in records {
        let about = format!("{} {}", record.profile, record.status.as_str());
        if let Some(alias) = &record.alias {
            candidates.push(
                CompletionCandidate::new(alias.as_str()).help(Some(record.id.to_string().into())),
            );
        }
        candidates.push(CompletionCandidate::new(record.id.as_str()).help(Some(about.into())));
    }
    candidates
}
